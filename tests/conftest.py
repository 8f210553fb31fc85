import os
import shutil

# The numba-cuda backend runs on Numba's CUDA simulator where there is no GPU. The
# variable must be set before numba is first imported anywhere in the process.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
# CI draws the same examples on every run, so a landing is never decided by luck; runs on
# a developer's machine draw new ones (and HYPOTHESIS_PROFILE=thorough draws many).
settings.register_profile("ci", settings.get_profile("default"), derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))
