"""`pip install .` (a wheel into a fresh virtual environment) gives the dualmode.* subpackages."""

import os
import subprocess
import sys
import venv


def test_wheel_installs_subpackages_into_fresh_venv(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(wheels), root], check=True)
    (wheel,) = wheels.glob("dualmode-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                    "--force-reinstall", str(wheel)], check=True)
    code = ("import dualmode, dualmode.recon.signflip, dualmode.io, dualmode.registration, dualmode.cli, dualmode.simulate;"
            "import io, os; assert hasattr(io, 'BytesIO');"
            "print(os.path.dirname(dualmode.io.__file__))")
    out = subprocess.run([str(py), "-I", "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout.strip()
    assert out.startswith(str(env_dir)) and out.endswith(os.path.join("dualmode", "io"))
    cli = subprocess.run([str(env_dir / "bin" / "dualmode"), "--version"], capture_output=True, text=True)
    assert cli.returncode == 0 and "dualmode" in cli.stdout
