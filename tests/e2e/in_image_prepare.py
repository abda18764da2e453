"""Runs vlmfleet.prepare_data inside the image, with md5s registered by the test.

    python in_image_prepare.py [--register NAME=MD5 ...] -- PREPARE_DATA_ARGS...

VLMEvalKit's real benchmark files are not available here (no network), so a test that needs a
"shipped official" TSV to pass the md5 check registers that file's md5 in VLMEvalKit's class
table, in this process only, when the preparation first looks the class up (so VLMEvalKit is
still imported while the host lock is held, as in a real preparation). Without --register the
class's own table (VLMEvalKit's md5s) is what the file is checked against.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    registered = dict(a.split("=", 1) for a in argv[:sep] if a != "--register")

    import vlmfleet.datasets as datasets
    from vlmfleet import prepare_data

    original = datasets.dataset_class

    def dataset_class(name: str) -> type | None:
        cls = original(name)
        if cls is not None and name in registered:
            if "DATASET_MD5" not in cls.__dict__:
                cls.DATASET_MD5 = dict(cls.DATASET_MD5)
            cls.DATASET_MD5[name] = registered[name]
        return cls

    datasets.dataset_class = dataset_class
    return prepare_data.main(argv[sep + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
