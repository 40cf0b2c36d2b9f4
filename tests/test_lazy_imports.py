"""`import metapeft` and `metapeft --help` stay light (PEP 562 lazy exports); every public name resolves."""

from __future__ import annotations

import subprocess
import sys

import metapeft


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_and_help_do_not_load_torch():
    code = ("import sys, contextlib, io, metapeft, metapeft.cli, metapeft.config, metapeft.experiments.aggregate\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    metapeft.cli.main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    assert _fresh(code) == "[]"


def test_every_public_name_resolves():
    for name in metapeft.__all__:
        assert getattr(metapeft, name) is not None, name
    import metapeft.experiments as ex
    import metapeft.peft as peft

    for pkg in (peft, ex):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, f"{pkg.__name__}.{name}"
    assert metapeft.peft.PeftConfig is metapeft.PeftConfig and callable(metapeft.eval.compute_metrics)
