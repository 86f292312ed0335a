"""OpenPose (COCO 18-part body model) decoding: heatmaps + part affinity fields -> people.

The steps follow the CMU OpenPose Python demo and its PyTorch port (Hzzone/pytorch-openpose),
whose ``_candidate.txt`` / ``_subset.txt`` files the official CoCosNet DeepFashion lists use:

1. :func:`find_peaks`: per part, Gaussian-smooth the heatmap (sigma 3), keep pixels that are
   >= their 4 neighbours and > ``thre1``; each peak is ``(x, y, score, id)`` where the score is
   read from the *unsmoothed* heatmap and ids run over all parts in order.
2. :func:`connect_limbs`: for each of the 19 limbs, score every (A, B) candidate pair by the mean
   dot product of the PAF with the unit vector A->B at 10 points along the segment, plus the
   distance prior ``min(0.5 * H / length - 1, 0)``; a pair is kept when more than 80% of the
   samples exceed ``thre2`` and the score is positive; pairs are then taken greedily by score
   (as the port does) so that no candidate is used twice.
3. :func:`group_people`: merge the connections into people ("subset" rows of 20: 18 candidate
   indices, -1 where missing, then the total score and the part count) with the port's rules and
   drop people with fewer than 4 parts or an average score below 0.4.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_PARTS = 18
PART_NAMES = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
# The 19 limbs as 0-based part pairs (the port lists them 1-based).
LIMBS = tuple(
    (a - 1, b - 1)
    for a, b in (
        (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
        (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
    )
)  # fmt: skip
# (x, y) channels of each limb's PAF in the concatenated 57-channel output (heatmaps 0..18).
PAF_CHANNELS = (
    (31, 32), (39, 40), (33, 34), (35, 36), (41, 42), (43, 44), (19, 20), (21, 22), (23, 24),
    (25, 26), (27, 28), (29, 30), (47, 48), (49, 50), (53, 54), (51, 52), (55, 56), (37, 38),
    (45, 46),
)  # fmt: skip
NUM_HEATMAPS = NUM_PARTS + 1  # + background
NUM_PAFS = 2 * len(LIMBS)
SUBSET_COLUMNS = NUM_PARTS + 2  # 18 part indices, total score, part count

THRE1 = 0.1
THRE2 = 0.05
MID_NUM = 10
SMOOTH_SIGMA = 3.0

Peak = tuple[int, int, float, int]  # x, y, score, id


def _smooth(heatmap: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter like scipy.ndimage.gaussian_filter (truncate 4, mirror 'reflect' border)."""
    radius = int(4.0 * sigma + 0.5)
    size = 2 * radius + 1
    return cv2.GaussianBlur(
        heatmap.astype(np.float64), (size, size), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )


def find_peaks(
    heatmaps: np.ndarray, thre1: float = THRE1, sigma: float = SMOOTH_SIGMA
) -> list[list[Peak]]:
    """Peaks of the first 18 heatmaps (P x H x W, P >= 18): per part a list of (x, y, score, id)."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 3 or heatmaps.shape[0] < NUM_PARTS:
        raise ValueError(f"heatmaps must be >= {NUM_PARTS} x H x W, got shape {heatmaps.shape}")
    all_peaks: list[list[Peak]] = []
    counter = 0
    for part in range(NUM_PARTS):
        raw = heatmaps[part].astype(np.float64)
        smooth = _smooth(raw, sigma)
        padded = np.pad(smooth, 1, mode="constant", constant_values=0.0)
        centre = padded[1:-1, 1:-1]
        is_peak = (
            (centre >= padded[:-2, 1:-1])
            & (centre >= padded[2:, 1:-1])
            & (centre >= padded[1:-1, :-2])
            & (centre >= padded[1:-1, 2:])
            & (centre > thre1)
        )
        ys, xs = np.nonzero(is_peak)  # row-major order, as the port
        peaks = [
            (int(x), int(y), float(raw[y, x]), counter + i)
            for i, (y, x) in enumerate(zip(ys, xs, strict=True))
        ]
        counter += len(peaks)
        all_peaks.append(peaks)
    return all_peaks


def connect_limbs(
    peaks: list[list[Peak]],
    pafs: np.ndarray,
    image_height: int,
    thre2: float = THRE2,
    mid_num: int = MID_NUM,
) -> list[np.ndarray]:
    """Per limb, an array K x 5 of accepted connections: (id A, id B, score, index A, index B).

    ``pafs`` is the network's 38 x H x W PAF output; limb ``k`` reads its x / y field from
    channels ``PAF_CHANNELS[k] - 19`` (the port's ``mapIdx``).
    """
    pafs = np.asarray(pafs)
    if pafs.ndim != 3 or pafs.shape[0] != NUM_PAFS:
        raise ValueError(f"pafs must be {NUM_PAFS} x H x W, got shape {pafs.shape}")
    _, height, width = pafs.shape
    connections = []
    for k, (part_a, part_b) in enumerate(LIMBS):
        cand_a, cand_b = peaks[part_a], peaks[part_b]
        field_x, field_y = (pafs[c - NUM_HEATMAPS] for c in PAF_CHANNELS[k])
        scored = []
        for i, (xa, ya, sa, _) in enumerate(cand_a):
            for j, (xb, yb, sb, _) in enumerate(cand_b):
                dx, dy = xb - xa, yb - ya
                norm = max(0.001, float(np.hypot(dx, dy)))
                ux, uy = dx / norm, dy / norm
                xs = np.clip(np.rint(np.linspace(xa, xb, num=mid_num)).astype(int), 0, width - 1)
                ys = np.clip(np.rint(np.linspace(ya, yb, num=mid_num)).astype(int), 0, height - 1)
                dots = field_x[ys, xs] * ux + field_y[ys, xs] * uy
                score = float(dots.mean()) + min(0.5 * image_height / norm - 1.0, 0.0)
                if np.count_nonzero(dots > thre2) > 0.8 * len(dots) and score > 0:
                    scored.append((i, j, score, score + sa + sb))
        scored.sort(key=lambda c: c[2], reverse=True)  # stable, as the port's sorted()
        chosen: list[list[float]] = []
        used_a: set[int] = set()
        used_b: set[int] = set()
        for i, j, score, _ in scored:
            if i in used_a or j in used_b:
                continue
            chosen.append([cand_a[i][3], cand_b[j][3], score, i, j])
            used_a.add(i)
            used_b.add(j)
            if len(chosen) >= min(len(cand_a), len(cand_b)):
                break
        connections.append(np.array(chosen, dtype=np.float64).reshape(-1, 5))
    return connections


def group_people(
    peaks: list[list[Peak]],
    connections: list[np.ndarray],
    min_parts: int = 4,
    min_mean_score: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Assemble connections into people: ``(candidate N x 4, subset M x 20)``."""
    flat = [p for part in peaks for p in part]
    candidate = np.array(flat, dtype=np.float64).reshape(-1, 4)
    subset = np.full((0, SUBSET_COLUMNS), -1.0)
    for k, (index_a, index_b) in enumerate(LIMBS):
        conn = connections[k]
        for row in conn:
            id_a, id_b, score = row[0], row[1], row[2]
            found = [
                j
                for j in range(len(subset))
                if subset[j, index_a] == id_a or subset[j, index_b] == id_b
            ]
            if len(found) == 1:
                j = found[0]
                if subset[j, index_b] != id_b:
                    subset[j, index_b] = id_b
                    subset[j, -1] += 1
                    subset[j, -2] += candidate[int(id_b), 2] + score
            elif len(found) >= 2:  # the port assumes at most 2; extra matches are ignored
                j1, j2 = found[0], found[1]
                both = (subset[j1, :NUM_PARTS] >= 0) & (subset[j2, :NUM_PARTS] >= 0)
                if not both.any():  # disjoint: merge j2 into j1
                    subset[j1, :NUM_PARTS] += subset[j2, :NUM_PARTS] + 1
                    subset[j1, -2:] += subset[j2, -2:]
                    subset[j1, -2] += score
                    subset = np.delete(subset, j2, axis=0)
                else:
                    subset[j1, index_b] = id_b
                    subset[j1, -1] += 1
                    subset[j1, -2] += candidate[int(id_b), 2] + score
            elif k < 17:
                new = np.full(SUBSET_COLUMNS, -1.0)
                new[index_a], new[index_b] = id_a, id_b
                new[-1] = 2
                new[-2] = candidate[int(id_a), 2] + candidate[int(id_b), 2] + score
                subset = np.vstack([subset, new])
    keep = [
        i
        for i in range(len(subset))
        if not (subset[i, -1] < min_parts or subset[i, -2] / subset[i, -1] < min_mean_score)
    ]
    return candidate, subset[keep].reshape(-1, SUBSET_COLUMNS)


def decode(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    thre1: float = THRE1,
    thre2: float = THRE2,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (19 x H x W) and PAFs (38 x H x W) at image size -> (candidate, subset)."""
    heatmaps, pafs = np.asarray(heatmaps), np.asarray(pafs)
    if heatmaps.ndim != 3 or heatmaps.shape[0] not in (NUM_PARTS, NUM_HEATMAPS):
        raise ValueError(f"heatmaps must be 19 x H x W, got shape {heatmaps.shape}")
    if pafs.shape[1:] != heatmaps.shape[1:]:
        raise ValueError(f"pafs {pafs.shape} and heatmaps {heatmaps.shape} differ in size")
    peaks = find_peaks(heatmaps, thre1)
    connections = connect_limbs(peaks, pafs, heatmaps.shape[1], thre2)
    return group_people(peaks, connections)


def split_concatenated(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the 57 x H x W ``net_output`` of CMU's deploy prototxt (``concat_stage7``: heatmaps
    ``Mconv7_stage6_L2`` in channels 0..18, PAFs ``Mconv7_stage6_L1`` in 19..56)."""
    output = np.asarray(output)
    if output.ndim != 3 or output.shape[0] != NUM_HEATMAPS + NUM_PAFS:
        raise ValueError(f"expected a 57 x H x W output, got shape {output.shape}")
    return output[:NUM_HEATMAPS], output[NUM_HEATMAPS:]
