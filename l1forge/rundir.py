"""The run directory: where each stage writes, and the record of which stages are done.

``state.json`` maps each finished stage to the fingerprint of its configuration and of the stages it read, and to
its result block. A stage whose fingerprint is unchanged and whose outputs exist is skipped; a stage killed midway
never reached ``state.json`` and is redone. ``state.json`` itself is replaced atomically after every stage.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

from l1forge.io import write_json_atomic


class RunDir:
    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    @property
    def data(self) -> pathlib.Path:
        return self.root / "data" / "jets.h5"

    def teacher(self, kind: str) -> pathlib.Path:
        return self.root / "teachers" / kind

    @property
    def student(self) -> pathlib.Path:
        return self.root / "students" / "student"

    @property
    def baseline(self) -> pathlib.Path:
        return self.root / "students" / "baseline"

    @property
    def firmware(self) -> pathlib.Path:
        return self.root / "firmware"

    @property
    def hls_project(self) -> pathlib.Path:
        return self.root / "firmware" / "hls_project"

    @property
    def emulation(self) -> pathlib.Path:
        return self.root / "emulation"

    @staticmethod
    def fingerprint(*parts) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def done(self, stage: str, fingerprint: str, outputs) -> bool:
        entry = self.state.get(stage)
        return bool(entry) and entry["fingerprint"] == fingerprint and all(pathlib.Path(p).exists() for p in outputs)

    def result(self, stage: str) -> dict:
        return self.state[stage]["result"]

    def record(self, stage: str, fingerprint: str, result: dict):
        self.state[stage] = {"fingerprint": fingerprint, "result": result}
        write_json_atomic(self.state_path, self.state)
