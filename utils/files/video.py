"""Video frames in and out (cv2): a video file or a folder of images as a sequence of frames,
and an .mp4 writer that never leaves a half-written video under the final name.

Frames are H x W x 3 uint8 BGR arrays, as OpenCV reads them; sizes are (height, width).
"""
import contextlib
import logging
import math
import os

import cv2

from utils.errors import DataError
from utils.files.atomic import make_temporary

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')  # still images and --sequence frames
VIDEO_FOURCC = 'mp4v'  # MPEG-4 Part 2: encoded by every OpenCV build with FFmpeg (pip wheels)


def is_image_file(path):
    """True when `path` has one of IMAGE_EXTENSIONS (any case)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


class VideoFrames:
    """The frames of a video file that OpenCV can decode, in order.

    Each iteration reopens the file, so the frames can be read more than once (the first
    frame is read at construction to check the file).

    Args:
        path: the video file.
    Attributes:
        path, name (file name without extension), image_size (height, width) of the first
        frame, fps (frames per second from the container, None when it gives none),
        num_frames (the container's frame count, None when unknown; an estimate for some
        formats), first_frame (H x W x 3 uint8 BGR).
    Raises:
        FileNotFoundError when the file does not exist; DataError when OpenCV cannot open it
        or decode a first frame.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.name = os.path.splitext(os.path.basename(self.path))[0]
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f'video {self.path}: no such file')
        capture = self._open()
        try:
            ok, frame = capture.read()
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            capture.release()
        if not ok or frame is None:
            raise DataError(f'video {self.path} has no frame OpenCV can decode: the file is '
                            f'empty, damaged or not a video')
        self.first_frame = frame
        self.image_size = frame.shape[:2]
        self.fps = float(fps) if math.isfinite(fps) and fps > 0 else None
        self.num_frames = int(count) if math.isfinite(count) and count > 0 else None

    def _open(self):
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            capture.release()
            raise DataError(f'cannot open video {self.path}: OpenCV has no reader for it (not a '
                            f'video, damaged, or a codec this OpenCV build lacks). Convert it (e.g. '
                            f'ffmpeg -i {self.path} -c:v mpeg4 out.mp4) or extract its frames and '
                            f'pass the folder with --sequence')
        return capture

    def __len__(self):
        if self.num_frames is None:
            raise TypeError(f'{self.path}: the container does not give a frame count')
        return self.num_frames

    def __iter__(self):
        """Yield (frame index, H x W x 3 uint8 BGR frame) until the decoder stops."""
        capture = self._open()
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                if frame.shape[:2] != self.image_size:
                    raise DataError(f'video {self.path}: frame {index} is {frame.shape[1]} x '
                                    f'{frame.shape[0]} px, the first was {self.image_size[1]} x '
                                    f'{self.image_size[0]} px')
                yield index, frame
                index += 1
        finally:
            capture.release()
        if self.num_frames is not None and index != self.num_frames:
            # Not an error: some containers only estimate the count; a damaged tail looks alike.
            logger.warning('%s: decoded %d frames, the container announced %d', self.path, index,
                           self.num_frames)


class FolderFrames:
    """The images of a folder (IMAGE_EXTENSIONS) as video frames, in file-name order.

    The order is that of the names as strings: number the files with leading zeros
    (frame_0001.png, ..., frame_0123.png).

    Args:
        folder: the folder.
    Attributes:
        path, name (the folder's name), files (sorted paths), image_size (height, width) of
        the first image, fps (None: a folder has no frame rate), num_frames, first_frame.
    Raises:
        FileNotFoundError / NotADirectoryError for a missing folder or a file; DataError when it
        holds no images or the first cannot be decoded. Later frames that cannot be decoded or
        differ in size raise DataError naming the file when they are reached.
    """

    def __init__(self, folder):
        self.path = os.fspath(folder)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f'frame folder {self.path}: no such folder')
        if not os.path.isdir(self.path):
            raise NotADirectoryError(f'{self.path} is not a folder of frames (for a video file use '
                                     f'--input)')
        self.name = os.path.basename(os.path.normpath(os.path.abspath(self.path)))
        self.files = sorted(os.path.join(self.path, f) for f in os.listdir(self.path)
                            if is_image_file(f))
        if not self.files:
            raise DataError(f'frame folder {self.path} holds no images '
                            f'({", ".join(IMAGE_EXTENSIONS)})')
        self.first_frame = self._read(0)
        self.image_size = self.first_frame.shape[:2]
        self.fps = None
        self.num_frames = len(self.files)

    def _read(self, index):
        path = self.files[index]
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise DataError(f'frame {index} of {self.path}: cannot decode {path}')
        return frame

    def __len__(self):
        return self.num_frames

    def __iter__(self):
        """Yield (frame index, H x W x 3 uint8 BGR frame) in file-name order."""
        for index in range(self.num_frames):
            frame = self.first_frame if index == 0 else self._read(index)
            if frame.shape[:2] != self.image_size:
                raise DataError(f'frame {index} of {self.path}: {self.files[index]} is '
                                f'{frame.shape[1]} x {frame.shape[0]} px, the first frame is '
                                f'{self.image_size[1]} x {self.image_size[0]} px; all frames '
                                f'must have one size')
            yield index, frame


class _CheckedWriter:
    """cv2.VideoWriter that refuses frames of the wrong size or type (cv2 drops them silently)."""

    def __init__(self, writer, path, image_size):
        self._writer, self._path, self.image_size = writer, path, tuple(image_size)
        self.frames = 0

    def write(self, frame_bgr):
        """Append one H x W x 3 uint8 BGR frame."""
        if frame_bgr.shape != (*self.image_size, 3) or frame_bgr.dtype.name != 'uint8':
            raise ValueError(f'{self._path}: frames must be {self.image_size[0]} x '
                             f'{self.image_size[1]} x 3 uint8 BGR, got shape {frame_bgr.shape} '
                             f'dtype {frame_bgr.dtype}')
        self._writer.write(frame_bgr)
        self.frames += 1


@contextlib.contextmanager
def atomic_video_writer(path, fps, image_size, fourcc=VIDEO_FOURCC):
    """Write a video to a temporary file beside `path`; rename it to `path` once complete.

    On any exception (or when no frame was written) the temporary file is removed and `path`
    is left as it was. The temporary name is `.<name>.<pid>.<random>.tmp<ext>`: it keeps the
    extension of `path` because OpenCV picks the container from it.

    Args:
        path: the video file to write (e.g. out/clip_mesh.mp4).
        fps: frames per second (> 0).
        image_size: (height, width) of every frame, px.
        fourcc: four-character codec code (default VIDEO_FOURCC).
    Yields:
        a writer with `.write(frame_bgr)` (H x W x 3 uint8 BGR) and `.frames`.
    """
    path = os.fspath(path)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f'{path}: fps must be a positive number, got {fps!r}')
    height, width = (int(s) for s in image_size)
    extension = os.path.splitext(path)[1]
    fd, tmp = make_temporary(path, extension)  # OpenCV reopens it by name
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise DataError(f'cannot write video {path}: OpenCV has no {fourcc!r} encoder for '
                            f'{extension!r} files in this build; use an .mp4 name')
        checked = _CheckedWriter(writer, path, (height, width))
        yield checked
        writer.release()
        if checked.frames == 0:
            raise ValueError(f'{path}: no frames were written')
        os.replace(tmp, path)
    except BaseException:
        writer.release()
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
