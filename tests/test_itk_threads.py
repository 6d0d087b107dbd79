"""SimpleITK is loaded only by folders that need it; a batch still fixes its thread count."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_itk_loaded_inside_a_pinned_block_starts_with_the_batch_count():
    """Not loaded when the block starts: ITK's own variable carries the count to the moment a folder
    loads it; after the block ITK is back to one thread per core and the variable is gone."""
    out = _run("""
        import os, sys
        from dualmode.batch import ITK_THREADS, pinned_threads
        from dualmode.registration.resample import itk_default_threads
        assert "SimpleITK" not in sys.modules
        with pinned_threads(2):
            assert itk_default_threads() == ITK_THREADS
            import SimpleITK as sitk  # a folder that refines by mutual information
            inside = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        after = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        print(inside, after, os.cpu_count(), "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS" in os.environ)
    """)
    inside, after, cores, variable = out.split()
    assert inside == "1" and after == cores and variable == "False"


def test_a_2d_folder_does_not_load_simpleitk(tmp_path):
    """A 2D widefield folder whose point fit needs no mutual-information refinement is registered, fused and written without SimpleITK (~80 MB
    resident and 0.1-0.2 s to load); its transform.tfm is still read by SimpleITK."""
    out = _run(f"""
        import sys
        from dualmode.simulate import SimulationConfig, simulate_folder
        from dualmode.pipeline import process_folder
        simulate_folder({str(tmp_path / 'f')!r}, SimulationConfig(seed=14, matrix=32))
        result = process_folder({str(tmp_path / 'f')!r}, {str(tmp_path / 'out')!r})
        print(result.registration is not None, "SimpleITK" in sys.modules)
    """)
    assert out == "True False"
    import numpy as np
    import SimpleITK as sitk

    from dualmode.registration import read_tfm

    tx = sitk.ReadTransform(str(tmp_path / "out" / "f" / "transform.tfm"))
    assert tx.GetName() == "AffineTransform" and np.isfinite(read_tfm(tmp_path / "out" / "f" / "transform.tfm")).all()
