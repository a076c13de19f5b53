"""The click classes under apo's Typer app: how the command line parses, before any command runs.

- A usage error (unknown option, missing argument, a value of the wrong type) is one ``error:``
  line naming the command and where to look, exit 2, like every other error apo reports; not a
  usage block and a boxed message.
- Flags show no ``<bool>`` type in ``--help``: they take no value.
- Shell completion (``--install-completion``, ``--show-completion``, ``_APO_COMPLETE``) answers
  for ``apo`` whatever name the process was started under, for the shell named after the flag
  (``apo --show-completion zsh``) or else the one apo runs under: the parent shell where it is
  one apo completes, else the login shell (``$SHELL``); when neither is, a usage error says to
  name one (Typer alone would print "Shell sh not supported." and exit 1).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import PurePath
from types import ModuleType
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from alphapulse_onnx import render
from alphapulse_onnx.errors import ExitCode

PROG_NAME = "apo"
COMPLETE_VAR = "_APO_COMPLETE"
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
COMPLETION_FLAGS = ("--show-completion", "--install-completion")
_NAMED_SHELL = "apo.completion_shell"  # ctx.meta key: the shell named after the flag


def _click_exceptions() -> ModuleType:
    """click's exceptions, from the copy Typer carries (0.26 and later) or from click itself."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


_errors = _click_exceptions()


def _without_flag_metavars(params: list[Any]) -> list[Any]:
    for param in params:
        flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
        if flag and param.metavar is None:
            param.metavar = ""  # Typer would show "<bool>" in the type column
    return params


def usage_line(exc: Any) -> str:
    """``apo convert: No such option: --nope; hint: `apo convert --help` lists ...``."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else PROG_NAME
    message = " ".join(exc.format_message().split()).rstrip(".")
    return f"{where}: {message}; hint: `{where} --help` lists its arguments and options"


def completion_shell(ctx: Any) -> str:
    """The shell to complete for: the one named after the flag, else the parent shell if apo
    completes it, else the login shell; a usage error when none of them is one."""
    named = ctx.meta.get(_NAMED_SHELL)
    supported = ", ".join(SHELLS)
    if named is not None:
        if named not in SHELLS:
            raise _errors.UsageError(f"no completion for the shell '{named}' (apo completes "
                                     f"{supported})", ctx)  # fmt: skip
        return str(named)
    from typer._completion_shared import _get_shell_name  # Typer's own detection (shellingham)

    detected = _get_shell_name()
    if detected in SHELLS:
        return str(detected)
    login = PurePath(os.environ.get("SHELL", "")).name
    if login in SHELLS:
        return login
    found = detected or login or "none"
    raise _errors.UsageError(
        f"cannot tell which shell to complete for (found {found}); name it after the flag, "
        f"one of {supported}: `apo --show-completion bash`",
        ctx,
    )


def _show_completion(ctx: Any, param: Any, value: Any) -> Any:
    if not value or ctx.resilient_parsing:
        return value
    from typer._completion_shared import get_completion_script

    shell = completion_shell(ctx)
    typer.echo(get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell))
    ctx.exit(0)


def _install_completion(ctx: Any, param: Any, value: Any) -> Any:
    if not value or ctx.resilient_parsing:
        return value
    from typer._completion_shared import install

    shell, path = install(shell=completion_shell(ctx), prog_name=PROG_NAME,
                          complete_var=COMPLETE_VAR)  # fmt: skip
    render.info_line(f"{shell} completion for apo installed in {path}; new shells complete apo")
    ctx.exit(0)


_COMPLETION = {
    "show_completion": (
        _show_completion,
        "Print the completion script for this shell, or for the shell named after the flag "
        f"({', '.join(SHELLS)}).",
    ),
    "install_completion": (
        _install_completion,
        "Install completion for this shell, or for the shell named after the flag.",
    ),
}


def _with_completion(params: list[Any]) -> list[Any]:
    for param in params:
        if param.name in _COMPLETION:
            param.callback, param.help = _COMPLETION[param.name]
            param.metavar = "[SHELL]"
    return params


class ApoCommand(TyperCommand):
    """A subcommand: flags without a type in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))


class ApoGroup(TyperGroup):
    """``apo`` itself: one-line usage errors for every subcommand, and completion as ``apo``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_completion(_without_flag_metavars(super().get_params(ctx)))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """``apo --show-completion zsh``: the word after a completion flag (before any command)
        names the shell; Typer's flags take no value."""
        args = list(args)
        for at, word in enumerate(args):
            if not word.startswith("-"):
                break  # a command: its options are its own
            if word in COMPLETION_FLAGS and at + 1 < len(args) and not args[at + 1].startswith("-"):
                ctx.meta[_NAMED_SHELL] = args.pop(at + 1)
                break
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(
                args,
                prog_name or PROG_NAME,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except _errors.ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # `apo` alone: the help was shown
                render.error_line(usage_line(exc))
            code = exc.exit_code
        except typer.Abort:
            render.error_line("interrupted")
            code = int(ExitCode.INTERRUPTED)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)
