"""Appearance of the synthetic FreiHAND-format samples: one pyrender render per sample and
the four image versions composited over procedural backgrounds (green screen, homogenised,
sample and auto colourisation). See synthetic/freihand.py for the whole recipe."""
import cv2
import numpy as np

from dataset.freihand.constants import FREIHAND_IMG_SIZE, FREIHAND_VERSIONS
from utils.vis.render import Shading  # pyrender itself is imported when a mesh is rendered

# Rendering and images.
SUPERSAMPLE = 2  # render at 2x and average 2x2 blocks: anti-aliased edges, coverage masks

# Skin tones, displayed RGB in [0, 1], light to dark; a sample interpolates between two.
SKIN_TONES = np.array([(0.96, 0.80, 0.69), (0.90, 0.70, 0.58), (0.80, 0.58, 0.45),
                       (0.63, 0.44, 0.32), (0.45, 0.31, 0.23)])
SKIN_JITTER = 0.03
LIGHT_INTENSITY_RANGE = (2.0, 4.0)  # pyrender directional light, linear units
AMBIENT_RANGE = (0.25, 0.5)
SENSOR_NOISE_RANGE = (0.5, 2.5)  # std of the (uniform) pixel noise, 8-bit levels

# ---------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------

def _value_noise(rng, size, cells, channels):
    """size x size x channels smooth noise in [0, 1]: a random (cells + 1)^2 grid, cubic-upsampled."""
    grid = rng.random((cells + 1, cells + 1, channels)).astype(np.float32)
    noise = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(noise.reshape(size, size, channels), 0.0, 1.0)


def _fractal_noise(rng, size, channels, octaves=(2, 4, 8, 16, 32), persistence=0.55):
    """Sum of value-noise octaves, rescaled to [-1, 1] (approximately zero mean)."""
    total = np.zeros((size, size, channels), dtype=np.float32)
    weight_sum = 0.0
    for k, cells in enumerate(octaves):
        weight = persistence ** k
        total += weight * (_value_noise(rng, size, cells, channels) - 0.5)
        weight_sum += weight
    return total * (2.0 / weight_sum)


def _gradient(rng, size):
    """size x size linear ramp in [0, 1] along a random direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    ramp = np.cos(angle) * u + np.sin(angle) * v
    return (ramp - ramp.min()) / (ramp.max() - ramp.min())


def _random_color(rng):
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def _draw_shapes(rng, img, count):
    """Blend `count` random filled shapes (ellipses, rectangles, polygons, thick lines) into img."""
    size = img.shape[0]
    for _ in range(count):
        overlay = img.copy()
        color = tuple(float(c) for c in _random_color(rng))
        kind = rng.integers(4)
        center = tuple(int(c) for c in rng.integers(0, size, size=2))
        if kind == 0:
            axes = tuple(int(a) for a in rng.integers(5, size // 2, size=2))
            cv2.ellipse(overlay, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind == 1:
            corner = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.rectangle(overlay, center, corner, color, -1)
        elif kind == 2:
            points = rng.integers(-size // 4, size + size // 4, size=(int(rng.integers(3, 7)), 2))
            cv2.fillPoly(overlay, [points.astype(np.int32)], color, cv2.LINE_AA)
        else:
            end = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.line(overlay, center, end, color, int(rng.integers(2, 12)), cv2.LINE_AA)
        alpha = rng.uniform(0.35, 1.0)
        img = (1.0 - alpha) * img + alpha * overlay
    return img


def green_screen_background(rng, size=FREIHAND_IMG_SIZE):
    """size x size x 3 float RGB (0..255): a green screen with uneven lighting."""
    hsv = np.array([[[rng.uniform(95.0, 145.0), rng.uniform(0.45, 0.8), rng.uniform(0.45, 0.8)]]],
                   dtype=np.float32)  # H in degrees, S and V in [0, 1]
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255.0
    light = 1.0 + rng.uniform(0.05, 0.2) * _fractal_noise(rng, size, 1, octaves=(1, 2, 4))
    light = light + rng.uniform(-0.15, 0.15) * (_gradient(rng, size)[..., None] - 0.5)
    return (base[None, None] * light).astype(np.float32)


def textured_background(rng, style, size=FREIHAND_IMG_SIZE):
    """size x size x 3 float RGB (0..255) procedural 'image-like' background.

    Args:
        style: 'smooth' (gradient and soft noise, few shapes), 'shapes' (many overlapping
            shapes) or 'texture' (strong fine-grained noise over shapes).
    """
    ramp = _gradient(rng, size)[..., None]
    img = (1.0 - ramp) * _random_color(rng) + ramp * _random_color(rng)
    amplitude = {'smooth': 25.0, 'shapes': 20.0, 'texture': 60.0}[style]
    img = img + rng.uniform(0.5, 1.0) * amplitude * _fractal_noise(rng, size, 3)
    count = {'smooth': rng.integers(0, 4), 'shapes': rng.integers(6, 16), 'texture': rng.integers(2, 8)}[style]
    img = _draw_shapes(rng, img.astype(np.float32), int(count))
    if style == 'texture':
        img = img + rng.uniform(10.0, 40.0) * _fractal_noise(rng, size, 3, octaves=(32, 64, 112))
    blur = rng.uniform(0.0, 2.0)  # some backgrounds out of focus
    if blur > 0.3:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), blur)
    return img


def _jitter_hue_saturation(rng, hand_rgb):
    """Hand colours (H x W x 3 float 0..255) with hue, saturation and value jittered."""
    hsv = cv2.cvtColor(np.clip(hand_rgb / 255.0, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-15.0, 15.0)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.15), 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def _jitter_gain_gamma(rng, hand_rgb):
    """Hand colours with per-channel gains and a gamma curve."""
    gain = rng.uniform(0.85, 1.15, size=3)
    gamma = rng.uniform(0.8, 1.25)
    return 255.0 * np.clip(hand_rgb * gain / 255.0, 0.0, 1.0) ** gamma


def _masked_mean(img, weight):
    return (img * weight[..., None]).sum(axis=(0, 1)) / max(weight.sum(), 1e-6)


def draw_skin_and_light(rng):
    """(skin RGB (3,) in [0, 1], render_mesh lighting keywords) of one sample: a skin tone
    between two neighbours of SKIN_TONES with a jitter, a directional light travelling into the
    scene (+z) from a random side of the camera, its intensity and the ambient level."""
    tone = rng.uniform(0.0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone))
    high = min(low + 1, len(SKIN_TONES) - 1)
    skin = (1 - (tone - low)) * SKIN_TONES[low] + (tone - low) * SKIN_TONES[high]
    skin = np.clip(skin + rng.uniform(-SKIN_JITTER, SKIN_JITTER, size=3), 0.0, 1.0)
    light_dir = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.6, 1.5)])
    return skin, Shading(light_dir=light_dir, light_intensity=rng.uniform(*LIGHT_INTENSITY_RANGE),
                         ambient=rng.uniform(*AMBIENT_RANGE))


def supersampled_intrinsics(K, s=SUPERSAMPLE):
    """K of the s-times finer image whose s x s pixel blocks average to the pixels of K's image.

    Pixel j of the fine image is centred on coarse coordinate (j + 0.5) / s - 0.5, so
    u_fine = s * u + (s - 1) / 2.
    """
    K_fine = np.array(K, dtype=np.float64)
    K_fine[:2] *= s
    K_fine[:2, 2] += (s - 1) / 2
    return K_fine


def render_hand(verts_cam, faces, K, rng, size=FREIHAND_IMG_SIZE):
    """Render the hand once with a random skin colour and lighting.

    Args:
        verts_cam: 778 x 3 camera-frame vertices, meters.
        faces: F x 3 vertex indices.
        K: 3 x 3 intrinsics of the image.
        rng: numpy Generator (skin and light draws).
        size: image side (px) of a square image, or (height, width).
    Returns:
        hand_rgb: H x W x 3 float32 (0..255), the hand's colour where alpha > 0;
        alpha: H x W float32 in [0, 1], the fraction of each pixel the hand covers.
    """
    height, width = (size, size) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
    from utils.vis.render import render_mesh  # imports pyrender lazily: only rendering needs OpenGL
    skin, light = draw_skin_and_light(rng)
    s = SUPERSAMPLE
    rgb, _, mask = render_mesh(verts_cam, faces, supersampled_intrinsics(K), (height * s, width * s),
                               color=skin, shading=light)
    coverage = mask.astype(np.float32)
    premultiplied = rgb.astype(np.float32) * coverage[..., None]
    # INTER_AREA with an integer factor averages s x s blocks.
    alpha = cv2.resize(coverage, (width, height), interpolation=cv2.INTER_AREA)
    averaged = cv2.resize(premultiplied, (width, height), interpolation=cv2.INTER_AREA)
    hand_rgb = averaged / np.maximum(alpha, 1e-6)[..., None]
    return hand_rgb, alpha


def compose_version(version, hand_rgb, alpha, rng):
    """One image version (docs/method.md §1) from a rendered hand.

    Args:
        version: one of FREIHAND_VERSIONS ('gs', 'hom', 'sample', 'auto').
        hand_rgb, alpha: from `render_hand`.
        rng: numpy Generator (background and colour draws).
    Returns:
        H x W x 3 uint8 RGB.
    """
    hand = hand_rgb.astype(np.float32)  # a copy: colour changes below stay local
    rows, cols = np.nonzero(alpha > 0)
    # Colour changes only where the hand is (cheaper than the whole image).
    region = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)) if rows.size else \
        (slice(0, 0), slice(0, 0))
    if version == 'gs':
        background = green_screen_background(rng)
        spill = rng.uniform(0.0, 0.12)  # green light reflected by the screen onto the hand
        tint = np.array([0.6, 1.4, 0.6], dtype=np.float32)
        hand[region] = (1.0 - spill) * hand[region] + spill * hand[region].mean(axis=2, keepdims=True) * tint
    elif version == 'hom':
        background = textured_background(rng, 'smooth')
        # Shift hand and background mean colours towards each other.
        strength = rng.uniform(0.2, 0.5)
        hand_mean = _masked_mean(hand, alpha)
        background_mean = background.reshape(-1, 3).mean(axis=0)
        middle = (hand_mean + background_mean) / 2
        hand = hand + strength * (middle - hand_mean)
        background = background + strength * (middle - background_mean)
    elif version == 'sample':
        background = textured_background(rng, 'shapes')
        hand[region] = _jitter_hue_saturation(rng, hand[region])
    elif version == 'auto':
        background = textured_background(rng, 'texture')
        hand[region] = _jitter_gain_gamma(rng, hand[region])
    else:
        raise ValueError(f'unknown image version {version!r}; expected one of {FREIHAND_VERSIONS}')
    return composite(hand, alpha, background, rng.uniform(*SENSOR_NOISE_RANGE), rng)


def composite(hand_rgb, alpha, background, noise_std, rng):
    """The hand over a background, with sensor noise, as an 8-bit image.

    Args:
        hand_rgb, alpha: H x W x 3 and H x W, from `render_hand` (colours 0..255).
        background: H x W x 3 float RGB, 0..255.
        noise_std: standard deviation of the pixel noise, 8-bit levels.
        rng: numpy Generator (the noise draws).
    Returns:
        H x W x 3 uint8 RGB.
    """
    img = alpha[..., None] * hand_rgb + (1.0 - alpha[..., None]) * background
    # Sensor noise: uniform with the given standard deviation (uniform draws are much cheaper
    # than Gaussian ones, and after JPEG the difference is invisible).
    img = img + np.float32(noise_std * np.sqrt(12.0)) * (rng.random(img.shape, dtype=np.float32) - 0.5)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def silhouette_mask(alpha):
    """uint8 mask (0 / 255) of the pixels the hand covers at least half (rasterize_mask's rule)."""
    return np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
