#!/usr/bin/python
"""Ansible module: load a `docker save` archive, failing with the daemon's own error."""

from __future__ import annotations

import os
import traceback
from typing import Any, NoReturn

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.docker.plugins.module_utils._api.errors import DockerException
from ansible_collections.community.docker.plugins.module_utils.common_api import (
    AnsibleDockerClient,
    RequestException,
)

DOCUMENTATION = r"""
---
module: eval_image_load
short_description: Load a docker save archive, naming the daemon's error when it fails
description:
  - Loads the images of a C(docker save) archive through the Docker API, as
    M(community.docker.docker_image_load) does, and returns the loaded image names.
  - A failed load fails with one message that names the archive and the daemon's own error
    (C(community.docker.docker_image_load) drops it and reports C(Archive potentially corrupt?)).
  - When that error is a full disk, the message also gives the free space under I(docker_root)
    now and the I(needed_bytes) a load needs there, and says what to do.
  - The daemon's host must see I(docker_root) at the same path (a local daemon) for the free
    space to be read; otherwise the message says it could not be read.
extends_documentation_fragment:
  - community.docker.docker.api_documentation
options:
  path:
    description: The archive on the host.
    type: path
    required: true
  docker_root:
    description:
      - The daemon's DockerRootDir (C(docker info)), where it unpacks the archive; read for its
        free space when the load fails on a full disk.
    type: path
  needed_bytes:
    description:
      - The free bytes a load of this archive needs under I(docker_root) at its peak, as the
        caller's check before the load computes them; named in a full-disk failure.
    type: int
requirements:
  - Docker API >= 1.25
author: vlm-fleet
"""

EXAMPLES = r"""
- name: Load the image
  eval_image_load:
    path: /var/lib/vlm-eval/images/vlm-eval.tar
    docker_root: /var/lib/docker
    needed_bytes: 13774499020
    timeout: 1800
  register: loaded

- name: Show what was loaded
  ansible.builtin.debug:
    msg: "{{ loaded.image_names | join(', ') }}"
"""

RETURN = r"""
image_names:
  description: The image names (or IDs, for untagged images) the archive loaded.
  type: list
  elements: str
  returned: success
  sample: ["vlm-eval:transformers-4.37"]
stdout:
  description: The daemon's output lines, errors included.
  type: str
  returned: always
"""

LOADED = ("Loaded image:", "Loaded image ID:")
DISK_FULL = "no space left on device"


def size_text(n: int) -> str:
    """Bytes as GiB with one decimal, or whole MiB below 1 GiB (where 0.x GiB says little)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on path's filesystem (df's Avail)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def failure_message(
    archive: str,
    cause: str,
    docker_root: str | None = None,
    free: int | None = None,
    needed: int | None = None,
) -> str:
    """One message naming the archive and the cause; for a full disk, the space under
    docker_root now, what a load needs there, and what to do."""
    message = f"could not load {archive}: {cause}"
    if DISK_FULL not in cause.lower():
        return message
    where = docker_root or "the Docker root"
    if free is None:
        message += f". The disk under {where} ran out of space (its free space is unreadable here)"
    else:
        message += f". The disk under {where} ran out of space: {size_text(free)} free there now"
    if needed is not None:
        message += (
            f"; a load of this archive needs {size_text(needed)} free there at its peak, and"
            " hosts whose Docker roots share one disk each need that much in turn, on top of the"
            " images loaded before theirs"
        )
    return message + f". Free space under {where}, then run site.yml again"


def load(client: Any, path: str) -> tuple[list[str], list[str], list[str]]:
    """The archive through /images/load: the loaded names, the daemon's output lines and its
    error messages (community.docker's own module keeps the first two only)."""
    output: list[str] = []
    errors: list[str] = []
    with open(path, "rb") as archive:
        response = client._post(client._url("/images/load"), data=archive, stream=True)
        for line in client._stream_helper(response, decode=True):
            if not isinstance(line, dict):
                output.append(str(line))
                continue
            output.extend((line.get("stream") or line.get("status") or "").splitlines())
            error = (line.get("errorDetail") or {}).get("message") or line.get("error")
            if error:
                errors.append(str(error))
                output.append(str(error))
    names = [
        text[len(prefix) :].strip()
        for text in output
        for prefix in LOADED
        if text.startswith(prefix)
    ]
    return names, output, errors


def fail(client: Any, cause: str, output: list[str], **extra: str) -> NoReturn:
    params = client.module.params
    root = params["docker_root"]
    free = None
    if root and DISK_FULL in cause.lower():
        try:
            free = free_bytes(root)
        except OSError:
            free = None
    message = failure_message(params["path"], cause, root, free, params["needed_bytes"])
    client.module.fail_json(msg=message, stdout="\n".join(output), **extra)


def main() -> None:
    client = AnsibleDockerClient(
        argument_spec={
            "path": {"type": "path", "required": True},
            "docker_root": {"type": "path"},
            "needed_bytes": {"type": "int"},
        },
        supports_check_mode=False,
    )
    try:
        names, output, errors = load(client, client.module.params["path"])
    # requests' exceptions are OSErrors too: these go first, with their traceback (-vvv).
    except (DockerException, RequestException) as exc:
        cause = f"the Docker API request failed: {to_native(exc)}"
        fail(client, cause, [], exception=traceback.format_exc())
    except OSError as exc:
        fail(client, to_native(exc), [])
    if errors:
        fail(client, f"the Docker daemon says: {'; '.join(errors)}", output)
    if not names:
        fail(client, "the Docker daemon reported no error but loaded no image", output)
    client.module.exit_json(changed=True, image_names=names, stdout="\n".join(output))


if __name__ == "__main__":
    main()
