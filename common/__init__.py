"""The bottom of the house: what every long job shares, and nothing of the project.

* :mod:`common.io`: atomic writes (the one implementation), content hashes, finite-tensor checks;
* :mod:`common.env`: the environment a number came from (git, packages, threads, CPU, device) and thread pinning;
* :mod:`common.rundir`: one run directory per job, its resolved config, fingerprint and stage markers;
* :mod:`common.validate`: typed, range-checked settings with errors that name the key and the value;
* :mod:`common.training`: metrics logging, accelerate checkpoints, resume and divergence guards;
* :mod:`common.stages`: a small stage runner over run directories (the shapes-world quickstart).

Imports torch / accelerate / omegaconf at most; never a project package (``tests/test_layering.py``).
"""
