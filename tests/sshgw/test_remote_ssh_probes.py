"""What VSCode/Cursor Remote-SSH does to install and reach its server, through the gateway (issue 13).

The real extension downloads its server from the internet, which these
machines cannot reach; these tests replay each step it takes with Debian's
OpenSSH client and a stand-in server (a small Python HTTP server that logs
the line the extension waits for). The steps, as the extension's logs and
the open-source open-remote-ssh's script show them:

- platform probes: ``uname -s``/``-m``/``-rsv``, ``ps``, the C library, os-release;
- ``ssh -T -D <port> host bash`` and the install script piped to its stdin
  (VSCode), or ``bash -c '<script>'`` (open-remote-ssh), or ``sh -c`` with a
  heredoc; the server tarball sent through an exec's stdin
  (``remote.SSH.localServerDownload``) and unpacked with ``tar``;
- the server started in the background (``&> log &``), its pid in a file, its
  port read from its log, a second run finding it with ``ps -p``;
- the editor reaching that port: SOCKS (``-D``, the same connection) or ``-L``.

docs/ssh.md says which steps these cover and what is left unverified.
"""

from __future__ import annotations

import io
import ipaddress
import re
import secrets
import socket
import subprocess
import tarfile
import time

import pytest

from tests.services_plugin import free_port

from .test_forwarding import close_tunnel, wait_listening

pytestmark = pytest.mark.usefixtures("portal")

COMMIT = "0123456789abcdef0123456789abcdef01234567"

# The stand-in for the VSCode server: it listens on 127.0.0.1, port 0, and
# logs the line the install script greps for, as the real one does.
FAKE_SERVER = """#!/usr/bin/python3
import http.server, sys
token = open(sys.argv[sys.argv.index("--connection-token-file") + 1]).read().strip()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/version?tkn=" + token
        body = b"fake-vscode-server " + (b"ok" if ok else b"bad token")
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("Extension host agent listening on", server.server_address[1], flush=True)
server.serve_forever()
"""

# Modelled on the install script of open-remote-ssh (VSCodium's Remote-SSH),
# with the download replaced by the tarball the client sent.
INSTALL_SCRIPT = r"""
TMP_DIR="${XDG_RUNTIME_DIR:-"/tmp"}"
SERVER_DATA_DIR="$HOME/.vscode-server"
SERVER_DIR="$SERVER_DATA_DIR/bin/@COMMIT@"
SERVER_SCRIPT="$SERVER_DIR/bin/fake-server"
SERVER_LOGFILE="$SERVER_DATA_DIR/.@COMMIT@.log"
SERVER_PIDFILE="$SERVER_DATA_DIR/.@COMMIT@.pid"
SERVER_TOKENFILE="$SERVER_DATA_DIR/.@COMMIT@.token"
LISTENING_ON=
print_install_results_and_exit() {
    echo "@ID@: start"
    echo "exitCode==$1=="
    echo "listeningOn==$LISTENING_ON=="
    echo "connectionToken==$SERVER_CONNECTION_TOKEN=="
    echo "osReleaseId==$OS_RELEASE_ID=="
    echo "arch==$ARCH=="
    echo "platform==$PLATFORM=="
    echo "kernel==$(uname -rsv)=="
    echo "home==$HOME=="
    echo "tmpDir==$TMP_DIR=="
    echo "@ID@: end"
    exit 0
}
command -v uname >/dev/null || print_install_results_and_exit 1
case "$(uname -s)" in Linux) PLATFORM=linux ;; *) print_install_results_and_exit 1 ;; esac
ARCH="$(uname -m)"
OS_RELEASE_ID="$(grep -i '^ID=' /etc/os-release 2>/dev/null | sed 's/^ID=//gi' | sed 's/"//g')"
if [[ -z $OS_RELEASE_ID ]]; then
    OS_RELEASE_ID="$(grep -i '^ID=' /usr/lib/os-release 2>/dev/null | sed 's/^ID=//gi' | sed 's/"//g')"
fi
if [[ ! -d $SERVER_DIR ]]; then
    mkdir -p $SERVER_DIR || print_install_results_and_exit 1
fi
if [[ ! -f $SERVER_SCRIPT ]]; then
    pushd $SERVER_DIR > /dev/null
    tar -xf vscode-server.tar.gz --strip-components 1 || print_install_results_and_exit 1
    rm -f vscode-server.tar.gz
    popd > /dev/null
fi
if [[ -f $SERVER_PIDFILE ]]; then
    SERVER_RUNNING_PROCESS="$(ps -o pid,args -p $(cat $SERVER_PIDFILE) | grep $SERVER_SCRIPT)"
fi
if [[ -z $SERVER_RUNNING_PROCESS ]]; then
    rm -f $SERVER_LOGFILE $SERVER_TOKENFILE
    touch $SERVER_TOKENFILE
    chmod 600 $SERVER_TOKENFILE
    echo "@TOKEN@" > $SERVER_TOKENFILE
    $SERVER_SCRIPT --start-server --host=127.0.0.1 --port=0 --connection-token-file $SERVER_TOKENFILE &> $SERVER_LOGFILE &
    echo $! > $SERVER_PIDFILE
else
    echo "Server script is already running $SERVER_SCRIPT"
fi
SERVER_CONNECTION_TOKEN="$(cat $SERVER_TOKENFILE)"
for i in {1..40}; do
    LISTENING_ON="$(grep -E 'Extension host agent listening on .+' $SERVER_LOGFILE | sed 's/Extension host agent listening on //')"
    [[ -n $LISTENING_ON ]] && break
    sleep 0.25
done
[[ -z $LISTENING_ON ]] && print_install_results_and_exit 1
print_install_results_and_exit 0
"""


def install_script(script_id: str, token: str) -> str:
    return (
        INSTALL_SCRIPT.replace("@COMMIT@", COMMIT)
        .replace("@ID@", script_id)
        .replace("@TOKEN@", token)
    )


def results(stdout: bytes, script_id: str) -> dict[str, str]:
    """The ``key==value==`` lines between the script's start and end markers."""
    text = stdout.decode()
    found = re.search(rf"{script_id}: start\n(.*?){script_id}: end", text, re.S)
    assert found, text
    return dict(re.findall(r"^(\w+)==(.*)==$", found.group(1), re.M))


def server_tarball() -> bytes:
    """A tarball with one top folder, as the server's (unpacked with --strip-components 1)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = FAKE_SERVER.encode()
        info = tarfile.TarInfo("vscode-server-linux-x64/bin/fake-server")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def socks5_get(socks_port: int, host: str, port: int, path: str) -> bytes:
    """An HTTP GET through ssh -D's SOCKS5 proxy, to ``host`` as the editor names it."""
    with socket.create_connection(("127.0.0.1", socks_port), timeout=20) as sock:
        sock.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
        assert sock.recv(2) == b"\x05\x00"
        try:
            address = b"\x01" + ipaddress.IPv4Address(host).packed
        except ValueError:
            address = b"\x03" + bytes([len(host)]) + host.encode()
        sock.sendall(b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
        reply = sock.recv(10)
        assert reply[:2] == b"\x05\x00", reply  # succeeded
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return read_all(sock)


def upload_server(portal) -> None:
    """``remote.SSH.localServerDownload``: the client's tarball through an exec's stdin."""
    done = portal.ssh(
        "dev",
        "a",
        f'mkdir -p "$HOME/.vscode-server/bin/{COMMIT}" && '
        f'cat > "$HOME/.vscode-server/bin/{COMMIT}/vscode-server.tar.gz"',
        stdin=server_tarball(),
    )
    assert done.returncode == 0, done.stderr


def test_the_platform_probes_answer_as_a_linux_host(portal):
    done = portal.ssh(
        "dev",
        "a",
        "uname -s; uname -m; uname -rsv; ps -p $$ -o comm=; ps -o pid,args -A | grep -c ps;"
        " getconf GNU_LIBC_VERSION; ldd --version | head -1;"
        " grep -h '^ID=' /etc/os-release /usr/lib/os-release 2>/dev/null | head -1;"
        " command -v tar gzip wget curl flock",
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "Linux"
    assert lines[1] in {"x86_64", "aarch64"}
    assert re.fullmatch(r"Linux \S+ #.+", lines[2]), lines[2]  # kernel name, release, version
    assert lines[3] == "bash"
    assert int(lines[4]) >= 1
    assert re.fullmatch(r"glibc 2\.\d+", lines[5])  # the server needs glibc >= 2.28
    assert "GLIBC" in lines[6] or "GNU libc" in lines[6]
    assert lines[7].startswith("ID=")
    assert lines[8:] == [f"/usr/bin/{tool}" for tool in ("tar", "gzip", "wget", "curl", "flock")]


def test_a_session_without_a_command_is_a_login_shell_in_root(portal):
    # ``ssh -T host`` with a script on stdin: what a client gets when it asks for no command.
    done = subprocess.run(
        portal.ssh_argv("dev", "a", "-T"),
        input=b'shopt -q login_shell && echo login; echo "$HOME $(pwd) $USER $SHELL"\n',
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    login, where = done.stdout.decode().splitlines()
    assert login == "login"
    assert where.split()[:2] == ["/root", "/root"]
    assert where.split()[-1] == "/bin/bash"


def test_a_script_piped_to_bash_runs_and_its_exit_status_comes_back(portal):
    # bash reads the script from stdin line by line: ``read`` takes the line after it.
    script = (
        b'echo "HOME=$HOME"\ncd\npwd\nread -r line\na line of data\necho "read:$line"\nexit 3\n'
    )
    done = subprocess.run(
        [*portal.ssh_argv("dev", "a", "-T"), "bash"],
        input=script,
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 3
    assert done.stdout.decode().splitlines() == ["HOME=/root", "/root", "read:a line of data"]


def test_sh_c_with_a_heredoc_in_the_command_line(portal):
    command = (
        'sh -c \'cat > heredoc-probe.sh <<"END"\n'
        'printf "%s|" "$0" "$HOME" "$(uname -s)"\n'
        "echo\n"
        "END\n"
        "sh heredoc-probe.sh'"
    )
    done = portal.ssh("dev", "a", command)

    assert done.returncode == 0, done.stderr
    assert done.stdout == b"heredoc-probe.sh|/root|Linux|\n"


def test_the_install_script_starts_a_server_that_socks_and_a_local_forward_reach(portal):
    # given the server's tarball sent by the client
    upload_server(portal)
    script_id, token = secrets.token_hex(12), secrets.token_hex(16)
    socks = free_port()

    # when the script goes to ``ssh -T -D <port> host bash``, whose stdin stays
    # open while the editor is connected (VSCode's local server mode)
    installer = subprocess.Popen(
        [*portal.ssh_argv("dev", "a", "-T", "-D", f"127.0.0.1:{socks}"), "bash"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert installer.stdin is not None and installer.stdout is not None
        installer.stdin.write(
            install_script(script_id, token).replace("exit 0\n}", "}", 1).encode()
        )
        installer.stdin.flush()
        out = b""
        deadline = time.monotonic() + 60
        while f"{script_id}: end".encode() not in out:
            assert time.monotonic() < deadline, out
            line = installer.stdout.readline()
            assert line, installer.stderr.read() if installer.stderr else out
            out += line
        found = results(out, script_id)

        # then the script saw Linux, /root and the server's port
        assert found["exitCode"] == "0", out
        assert (found["platform"], found["home"]) == ("linux", "/root")
        assert found["kernel"].startswith("Linux ")
        assert found["osReleaseId"], out
        assert found["connectionToken"] == token
        port = int(found["listeningOn"])

        # and the editor reaches it through the same connection's SOCKS proxy
        wait_listening(socks, installer)
        for host in ("127.0.0.1", "localhost"):
            answer = socks5_get(socks, host, port, f"/version?tkn={token}")
            assert answer.endswith(b"fake-vscode-server ok"), answer

        # and through ``ssh -L`` on a second connection (remote.SSH.enableDynamicForwarding off)
        local = free_port()
        tunnel = subprocess.Popen(
            portal.ssh_argv(
                "dev",
                "a",
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"{local}:127.0.0.1:{port}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_listening(local, tunnel)
            assert http_get(local, f"/version?tkn={token}").endswith(b"fake-vscode-server ok")
            assert b"403" in http_get(local, "/version?tkn=wrong").split(b"\r\n", 1)[0]
        finally:
            close_tunnel(tunnel)
    finally:
        installer.stdin.close()  # the editor went away: bash reads EOF and ends
        installer.wait(30)

    # when the install script runs again, the server is found running (ps -p) and reused
    second_id = secrets.token_hex(12)
    again = subprocess.run(
        [*portal.ssh_argv("dev", "a", "-T"), "bash"],
        input=install_script(second_id, "not-used").encode(),
        capture_output=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert b"Server script is already running" in again.stdout
    assert results(again.stdout, second_id)["listeningOn"] == str(port)
    assert results(again.stdout, second_id)["connectionToken"] == token

    portal.ssh("dev", "a", f"kill $(cat .vscode-server/.{COMMIT}.pid)")


def test_the_install_script_as_bash_c_in_the_command_line(portal):
    # open-remote-ssh sends the whole script as one exec: bash -c '<script>'
    # (a fresh install: whatever an earlier test unpacked or started is gone)
    portal.ssh("dev", "a", f"rm -rf .vscode-server/bin/{COMMIT}/bin .vscode-server/.{COMMIT}.pid")
    upload_server(portal)
    script_id, token = secrets.token_hex(12), secrets.token_hex(16)
    quoted = install_script(script_id, token).replace("'", "'\\''")

    done = portal.ssh("dev", "a", f"bash -c '{quoted}'")

    assert done.returncode == 0, done.stderr
    found = results(done.stdout, script_id)
    assert found["exitCode"] == "0", done.stdout
    port = int(found["listeningOn"])
    # The server outlived the exec that started it: a new connection reaches it.
    local = free_port()
    tunnel = subprocess.Popen(
        portal.ssh_argv("dev", "a", "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"{local}:localhost:{port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_listening(local, tunnel)
        assert http_get(local, f"/version?tkn={token}").endswith(b"fake-vscode-server ok")
    finally:
        close_tunnel(tunnel)
        portal.ssh("dev", "a", f"kill $(cat .vscode-server/.{COMMIT}.pid)")


def test_a_background_server_outlives_a_client_that_drops_while_bash_still_reads(portal):
    # VSCode's local server mode keeps ``ssh -T -D port host bash`` open; when
    # the editor quits or the network drops, ssh dies while bash still waits.
    installer = subprocess.Popen(
        [*portal.ssh_argv("dev", "a", "-T"), "bash"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert installer.stdin is not None and installer.stdout is not None
    installer.stdin.write(b"sleep 600 &> /dev/null &\necho $! > background.pid\necho started\n")
    installer.stdin.flush()
    assert installer.stdout.readline() == b"started\n"

    installer.kill()
    installer.wait(10)
    time.sleep(4)  # past the agent's hang-up wait

    alive = portal.ssh("dev", "a", "kill -0 $(cat background.pid) && echo alive")
    portal.ssh("dev", "a", "kill $(cat background.pid)")
    assert alive.stdout == b"alive\n"
