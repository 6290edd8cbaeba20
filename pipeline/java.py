"""Spark needs a Java 17+ runtime; say so in one line before anything else starts.

Kept free of third-party imports so `make demo` can run it before `.venv` exists.
"""

import os
import re
import shutil
import subprocess
import sys

MIN_JAVA = 17
INSTALL_HINT = (
    "install a Java 17+ runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "macOS: `brew install openjdk@17`) or point JAVA_HOME at one"
)


def java_executable() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def java_problem() -> str | None:
    """Why Spark cannot start here, or None when a suitable Java is found."""
    java = java_executable()
    if java is None:
        return f"Spark needs Java {MIN_JAVA}+, but no `java` is on PATH: {INSTALL_HINT}."
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (
            f"Spark needs Java {MIN_JAVA}+, but `{java} -version` failed ({exc}): {INSTALL_HINT}."
        )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return f"Spark needs Java {MIN_JAVA}+, but `{java} -version` printed no version."
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        return f"Spark needs Java {MIN_JAVA}+, but {java} is Java {major}: {INSTALL_HINT}."
    return None


if __name__ == "__main__":
    problem = java_problem()
    if problem:
        print(f"longmix: error: {problem}", file=sys.stderr)
        sys.exit(1)
