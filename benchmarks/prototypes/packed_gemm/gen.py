"""Writes loops.py: the register tile is MR x NR hand-unrolled (numba cannot unroll by itself).

python gen.py [MR NR]   (default 4 3)
"""
import sys

MR = int(sys.argv[1]) if len(sys.argv) > 1 else 4
NR = int(sys.argv[2]) if len(sys.argv) > 2 else 3
OUT = sys.argv[3] if len(sys.argv) > 3 else "loops.py"

I = "    "


def tile_code(ind):
    """The micro-kernel: MR rows of Ap x NR rows of Bp, k innermost (vectorised by LLVM with reassoc)."""
    L = []
    acc = [f"c{r}{c}" for r in range(MR) for c in range(NR)]
    L.append(ind + " = ".join(acc) + " = zero")
    L.append(ind + "for k in range(ku0, kup):")
    L.append(ind + I + ", ".join(f"a{r}" for r in range(MR)) + " = "
             + ", ".join(f"Ap[i + {r}, k]" for r in range(MR)))
    L.append(ind + I + ", ".join(f"b{c}" for c in range(NR)) + " = "
             + ", ".join(f"Bp[j + {c}, k]" for c in range(NR)))
    for r in range(MR):
        for c in range(NR):
            L.append(ind + I + f"c{r}{c} += a{r} * b{c}")
    L.append(ind + "gi = i0 + i")
    L.append(ind + f"if gi + {MR} <= M and j + {NR} <= n1:")
    for r in range(MR):
        for c in range(NR):
            L.append(ind + I + f"C[gi + {r}, j + {c}] += al * c{r}{c}")
    L.append(ind + "else:  # edge tile: through the spare columns KC.. of Ap rows 0..MR-1 (never read by the tile)")
    for r in range(MR):
        for c in range(NR):
            L.append(ind + I + f"Ap[{r}, KC + {c}] = c{r}{c}")
    L.append(ind + I + f"for r in range(min({MR}, M - gi)):")
    L.append(ind + I * 2 + f"for c in range(min({NR}, n1 - j)):")
    L.append(ind + I * 3 + "C[gi + r, j + c] += al * Ap[r, KC + c]")
    return "\n".join(L)


src = open("loops_template.py").read()
src = src.replace("@@MR@@", str(MR)).replace("@@NR@@", str(NR))
lines = src.split("\n")
for n, line in enumerate(lines):
    if line.strip() == "@@TILE@@":
        lines[n] = tile_code(line[: len(line) - len(line.lstrip())])
src = "\n".join(lines)
open(OUT, "w").write(src)
print("wrote", OUT, "MR", MR, "NR", NR)
