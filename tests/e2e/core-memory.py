# SPDX-License-Identifier: MPL-2.0
"""Writes the memory of an ELF core file (the bytes of its PT_LOAD segments) to OUT.

Usage: core-memory.py CORE OUT

A core file also holds notes: each thread's registers, the SSE/AVX state
included (NT_X86_XSTATE). Those keep whatever the last vector copy moved, e.g.
a few dozen bytes of the request curl copied last; they are the CPU's state,
not memory the agent holds, and the scans of tests/e2e look at memory.
"""

import struct
import sys

core, out = sys.argv[1], sys.argv[2]
with open(core, "rb") as f:
    data = f.read()
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit("not a 64-bit ELF core")
phoff = struct.unpack_from("<Q", data, 0x20)[0]
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
with open(out, "wb") as f:
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:  # PT_LOAD
            f.write(data[p_offset:p_offset + p_filesz])
