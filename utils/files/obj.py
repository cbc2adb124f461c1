"""Wavefront OBJ meshes."""
from utils.files.atomic import atomic_open


def write_obj(path, verts, faces):
    """Wavefront OBJ of a triangle mesh (1-based faces, 6 decimals), written atomically.

    Args:
        verts: V x 3 (e.g. meters, camera frame); faces: F x 3 0-based vertex indices.
    """
    with atomic_open(path, 'w') as f:
        f.write(''.join(f'v {x:.6f} {y:.6f} {z:.6f}\n' for x, y, z in verts))
        f.write(''.join(f'f {a + 1} {b + 1} {c + 1}\n' for a, b, c in faces))
