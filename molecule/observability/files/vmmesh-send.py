#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Send GET requests one after the other; the verifier's load tool on a lab host.

vmmesh-send URL COUNT [HEADERS_JSON]   COUNT requests (HEADERS_JSON: a list of header maps, one per request);
                                       prints {start_us, end_us, statuses, answers}
vmmesh-send URL --until FILE           requests until FILE exists; prints one status code a line
"""

from __future__ import annotations

import json
import os
import sys
import time
from urllib.error import HTTPError
from urllib.request import Request, urlopen


def get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        with urlopen(Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def main(argv: list[str]) -> None:
    url = argv[1]
    if argv[2] == "--until":
        while not os.path.exists(argv[3]):
            status, _answer = get(url, {})
            print(status, flush=True)
        return
    count = int(argv[2])
    headers = json.loads(argv[3]) if len(argv) > 3 else [{}] * count
    start = time.time()
    statuses, answers = [], []
    for number in range(count):
        status, answer = get(url, headers[number])
        statuses.append(status)
        answers.append(answer if len(argv) > 3 else "")
    print(
        json.dumps(
            {"start_us": int(start * 1e6), "end_us": int(time.time() * 1e6), "statuses": statuses, "answers": answers}
        )
    )


if __name__ == "__main__":
    main(sys.argv)
