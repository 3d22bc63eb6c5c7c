"""Run a command under a unit's system call filter, as systemd would apply it (no systemd here).

    /usr/bin/python3 tests/systemd_seccomp.py UNIT_FILE -- COMMAND [ARGS...]

Reads SystemCallFilter= (the first line an allow-list, `~` lines removed from it) and
SystemCallErrorNumber= from UNIT_FILE, expands the @groups with `systemd-analyze syscall-filter`,
loads the filter with libseccomp (Debian's python3-seccomp, installed for the system python3,
hence /usr/bin/python3) and execs COMMAND. A call outside the filter fails with the unit's error
number, or kills the process with SIGSYS when the unit sets none, as under systemd.

Standard library and seccomp only: it runs on the system interpreter, not the project's venv.
"""

import errno
import os
import subprocess
import sys
from typing import Dict, List, Optional, Set, Tuple

import seccomp  # type: ignore[import-not-found]


def unit_filter(text: str) -> Tuple[List[Tuple[bool, List[str]]], Optional[str]]:
    """[(deny, names)] in order, and the SystemCallErrorNumber (None when unset)."""
    rules = []
    error_number = None
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            deny = value.startswith("~")
            rules.append((deny, value.lstrip("~").split()))
        elif key == "SystemCallErrorNumber":
            error_number = value.strip()
    return rules, error_number


def expand(name: str, cache: Dict[str, Set[str]]) -> Set[str]:
    """A syscall name, or every syscall of a @group (nested groups included)."""
    if not name.startswith("@"):
        return {name}
    if name not in cache:
        listing = subprocess.run(
            ["systemd-analyze", "syscall-filter", "--no-pager", name], capture_output=True, text=True, check=True
        ).stdout
        members: Set[str] = set()
        cache[name] = members
        for line in listing.splitlines()[1:]:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                members |= expand(entry, cache)
    return cache[name]


def allowed_syscalls(rules: List[Tuple[bool, List[str]]]) -> Set[str]:
    cache: Dict[str, Set[str]] = {}
    allowed: Set[str] = set()
    for deny, names in rules:
        group = set().union(*(expand(name, cache) for name in names))
        allowed = allowed - group if deny else allowed | group
    return allowed


def main(argv: List[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: systemd_seccomp.py UNIT_FILE -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    with open(argv[0]) as unit:
        rules, error_number = unit_filter(unit.read())
    default = seccomp.ERRNO(getattr(errno, error_number)) if error_number else seccomp.KILL_PROCESS
    syscall_filter = seccomp.SyscallFilter(defaction=default)
    for name in sorted(allowed_syscalls(rules)):
        try:
            syscall_filter.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a syscall of this architecture
    syscall_filter.load()
    os.execv(argv[2], argv[2:])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
