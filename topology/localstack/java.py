"""Find a Java runtime new enough for the broker and the registry (both need Java 17+)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from topology.localstack.process import LocalStackError

MIN_JAVA = 17
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_INSTALL_HINT = "install openjdk-17-jre-headless (or set ALPHA_JAVA or JAVA_HOME)"


@dataclass(frozen=True, slots=True)
class Java:
    """A java executable and its major version."""

    path: str
    major: int


def find_java(explicit: str | None = None) -> Java:
    """Return the java to run the stack with.

    Looks at ``explicit`` (``ALPHA_JAVA``), then ``$JAVA_HOME/bin/java``, then ``java`` on PATH.

    Raises:
        LocalStackError: No java is found, or it is older than 17.
    """
    candidates = [explicit] if explicit else []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(home, "bin", "java"))
    candidates.append("java")
    for candidate in candidates:
        path = shutil.which(candidate) if candidate else None
        if path is None:
            if explicit and candidate == explicit:
                raise LocalStackError(f"ALPHA_JAVA={explicit} is not an executable java")
            continue
        major = _major_version(path)
        if major >= MIN_JAVA:
            return Java(path=path, major=major)
        raise LocalStackError(
            f"{path} is Java {major}; Java {MIN_JAVA}+ is needed: {_INSTALL_HINT}"
        )
    raise LocalStackError(f"Java {MIN_JAVA} not found: {_INSTALL_HINT}")


def _major_version(path: str) -> int:
    try:
        out = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalStackError(f"cannot run {path} -version: {exc}") from exc
    match = _VERSION.search(out.stderr + out.stdout)
    if match is None:
        raise LocalStackError(f"cannot read the Java version from `{path} -version`")
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2) or 0) if major == 1 else major
