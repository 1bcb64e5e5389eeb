"""The work units of ``make test``'s workers (tests/scheduling.py)."""

from pathlib import Path

from tests.scheduling import TORCH_IMAGE_FILES, TORCH_IMAGE_UNIT, units

TESTS = Path(__file__).resolve().parent


def test_every_file_on_the_torch_image_is_in_its_unit_and_only_those():
    using = {
        f"tests/{path.relative_to(TESTS)}"
        for path in TESTS.rglob("test_*.py")
        if path != Path(__file__).resolve() and "TORCH_RECIPE" in path.read_text()
    }
    # The unit must hold them all (else the image is built again on another
    # worker) and nothing else (else that file waits behind the build).
    assert using == TORCH_IMAGE_FILES


def test_a_unit_is_a_run_of_one_files_tests_in_the_collections_order():
    collection = [
        "tests/a.py::test_in_a_transaction",
        "tests/a.py::test_in_a_transaction_too",
        "tests/gpu_jobs/test_cuda_check_job.py::test_commits",
        "tests/b.py::test_commits",
        "tests/a.py::test_commits",
        "tests/cluster/test_images.py::test_without_a_database",
        "tests/a.py::test_without_a_database",
    ]

    found = units(collection)

    assert list(found.values()) == [
        "tests/a.py #1",
        "tests/a.py #1",
        TORCH_IMAGE_UNIT,
        "tests/b.py #3",
        "tests/a.py #4",
        TORCH_IMAGE_UNIT,
        "tests/a.py #6",
    ]
