"""Images, resource presets, workshops (persistent dev environments), SSH keys, terminal."""
