"""Builds the corpus of real Windows PE files the feature tests run on, and caches it.

Sources, each used when available: the ``clamav-testfiles`` Debian package (packed and
installer PE files, plus archives and documents that are not PE), small programs compiled with
``x86_64-w64-mingw32-gcc`` (console, GUI, DLL, stripped), and the DLLs shipped with that
compiler. Binaries are never committed: the corpus lives in ``$FEDMETAMAL_PE_CORPUS`` or
``~/.cache/fedmetamal/pe-corpus``. Run this file to build it ahead of the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV = "FEDMETAMAL_PE_CORPUS"
MANIFEST = "manifest.json"
MINGW = "x86_64-w64-mingw32-gcc"
CLAMAV_PACKAGE = "clamav-testfiles"
#: The compiler's DLLs above this size are left out, to keep the default test run light.
MAX_DLL_BYTES = 2 * 1024 * 1024

_PROGRAMS: dict[str, tuple[str, list[str]]] = {
    "hello.exe": ('#include <stdio.h>\nint main(void){puts("hello");return 0;}\n', []),
    "hello-O2-stripped.exe": (
        '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n',
        ["-O2", "-s"],
    ),
    "gui.exe": (
        "#include <windows.h>\nint WINAPI WinMain(HINSTANCE a,HINSTANCE b,LPSTR c,int d)"
        '{MessageBoxA(0,"hi","t",0);return 0;}\n',
        ["-mwindows"],
    ),
    "sum.dll": (
        "__declspec(dllexport) int sum(int a,int b){return a+b;}\n"
        "__declspec(dllexport) int twice(int a){return 2*a;}\n",
        ["-shared"],
    ),
    "files.exe": (
        "#include <windows.h>\n#include <stdio.h>\nint main(int c,char**v){HANDLE h="
        'CreateFileA(c>1?v[1]:"x",GENERIC_READ,0,0,OPEN_EXISTING,0,0);'
        'printf("%p\\n",h);return h==INVALID_HANDLE_VALUE;}\n',
        ["-O1"],
    ),
    "static.exe": (
        '#include <stdio.h>\n#include <string.h>\nint main(int c,char**v){printf("%zu\\n",'
        "strlen(v[0]));return 0;}\n",
        ["-static", "-Os"],
    ),
}


@dataclass(frozen=True)
class Corpus:
    """The cached corpus: PE files, non-PE files, and what could not be built (with why)."""

    root: Path
    pe_files: tuple[Path, ...]
    other_files: tuple[Path, ...]
    missing: tuple[str, ...]


def corpus_dir() -> Path:
    """Where the corpus is cached: ``$FEDMETAMAL_PE_CORPUS`` or the user cache folder."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedmetamal" / "pe-corpus"


def _is_pe(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(64)
    if len(head) < 64 or head[:2] != b"MZ":
        return False
    lfanew = int.from_bytes(head[60:64], "little")
    with path.open("rb") as fh:
        fh.seek(lfanew)
        return fh.read(4) == b"PE\0\0"


def _clamav(dest: Path) -> str | None:
    """Unpack clamav-testfiles into ``dest``; the reason when it cannot."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "clamav-testfiles: apt-get/dpkg-deb not available"
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", CLAMAV_PACKAGE],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        debs = sorted(Path(tmp).glob(f"{CLAMAV_PACKAGE}_*.deb"))
        if got.returncode != 0 or not debs:
            why = (got.stderr.strip().splitlines() or ["no .deb"])[-1]
            return f"clamav-testfiles: apt-get download failed ({why})"
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, timeout=120)
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(unpacked.rglob("*")):
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, dest / path.name)
    return None


def _mingw(dest: Path) -> str | None:
    """Compile the small programs and copy the compiler's DLLs; the reason when it cannot."""
    compiler = shutil.which(MINGW)
    if compiler is None:
        return f"mingw programs: {MINGW} not installed (apt-get install gcc-mingw-w64-x86-64)"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, flags) in _PROGRAMS.items():
            src = Path(tmp) / (Path(name).stem + ".c")
            src.write_text(source)
            subprocess.run(
                [compiler, *flags, "-o", str(dest / name), str(src)],
                check=True,
                capture_output=True,
                timeout=120,
            )
    root = Path("/usr/lib/gcc/x86_64-w64-mingw32")
    dlls = sorted(root.rglob("*.dll")) if root.is_dir() else []
    for dll in [p for p in dlls if p.stat().st_size <= MAX_DLL_BYTES][:6]:
        shutil.copyfile(dll, dest / dll.name)
    return None


def build_corpus(root: Path | None = None) -> Corpus:
    """The corpus at ``root`` (default :func:`corpus_dir`), built on first use."""
    root = root or corpus_dir()
    manifest = root / MANIFEST
    if not manifest.is_file():
        root.mkdir(parents=True, exist_ok=True)
        missing = [why for why in (_clamav(root / "clamav"), _mingw(root / "mingw")) if why]
        manifest.write_text(json.dumps({"missing": missing}, indent=1))
    missing = tuple(json.loads(manifest.read_text())["missing"])
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    pe = tuple(p for p in files if _is_pe(p))
    other = tuple(p for p in files if p not in pe)
    return Corpus(root, pe, other, missing)


if __name__ == "__main__":
    corpus = build_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"{corpus.root}: {len(corpus.pe_files)} PE files, {len(corpus.other_files)} others")
    for why in corpus.missing:
        print(f"missing: {why}")
