"""utils/files/video.py: frames from a video file or a folder, clear errors naming the file, and
the atomic mp4 writer."""
import os

import cv2
import numpy as np
import pytest

from utils.errors import DataError
from utils.files.video import FolderFrames, VideoFrames, atomic_video_writer

SIZE = (48, 64)  # height, width


def frame(level):
    return np.full((*SIZE, 3), level, dtype=np.uint8)


def test_written_video_reads_back_frame_by_frame(tmp_path):
    path = tmp_path / 'levels.mp4'
    with atomic_video_writer(path, 12.5, SIZE) as video:
        for level in (0, 80, 160, 240):
            video.write(frame(level))
    assert video.frames == 4 and sorted(os.listdir(tmp_path)) == ['levels.mp4']
    frames = VideoFrames(path)
    assert (frames.name, frames.image_size, frames.fps, frames.num_frames) == ('levels', SIZE, 12.5, 4)
    for _ in range(2):  # each iteration reopens the file
        read = list(frames)
        assert [k for k, _ in read] == [0, 1, 2, 3]
        np.testing.assert_allclose([f.mean() for _, f in read], [0, 80, 160, 240], atol=3)


def test_writer_leaves_nothing_on_error_and_refuses_a_wrong_frame(tmp_path):
    path = tmp_path / 'out.mp4'
    path.write_bytes(b'previous')
    with pytest.raises(ValueError, match=r'frames must be 48 x 64 x 3 uint8 BGR, got shape \(48, 65, 3\)'):
        with atomic_video_writer(path, 10, SIZE) as video:
            video.write(frame(10))
            video.write(np.zeros((48, 65, 3), dtype=np.uint8))
    assert path.read_bytes() == b'previous' and os.listdir(tmp_path) == ['out.mp4']
    with pytest.raises(ValueError, match='no frames were written'):
        with atomic_video_writer(tmp_path / 'empty.mp4', 10, SIZE):
            pass
    assert os.listdir(tmp_path) == ['out.mp4']


@pytest.mark.parametrize('content', [b'', b'not a video at all' * 50])
def test_a_video_opencv_cannot_read_is_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / 'broken.mp4'
    path.write_bytes(content)
    with pytest.raises(DataError, match='broken.mp4'):
        VideoFrames(path)
    with pytest.raises(FileNotFoundError, match='missing.mp4: no such file'):
        VideoFrames(tmp_path / 'missing.mp4')


def test_folder_frames_in_name_order_with_size_and_decode_errors(tmp_path):
    for name, level in (('f_002.png', 20), ('f_000.png', 0), ('f_001.jpg', 10), ('notes.txt', 0)):
        if name.endswith('.txt'):
            (tmp_path / name).write_text('not a frame')
        else:
            cv2.imwrite(str(tmp_path / name), frame(level))
    frames = FolderFrames(tmp_path)
    assert [os.path.basename(f) for f in frames.files] == ['f_000.png', 'f_001.jpg', 'f_002.png']
    assert (frames.image_size, frames.fps, len(frames), frames.name) == (SIZE, None, 3, tmp_path.name)
    np.testing.assert_allclose([f.mean() for _, f in frames], [0, 10, 20], atol=2)

    cv2.imwrite(str(tmp_path / 'f_003.png'), np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r'frame 3 of .*f_003.png is 10 x 10 px, the first frame is 64 x 48'):
        list(FolderFrames(tmp_path))
    (tmp_path / 'f_003.png').write_bytes(b'garbage')
    with pytest.raises(DataError, match=r'frame 3 of .*cannot decode .*f_003.png'):
        list(FolderFrames(tmp_path))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DataError, match='empty holds no images'):
        FolderFrames(empty)
    with pytest.raises(FileNotFoundError, match='nowhere: no such folder'):
        FolderFrames(tmp_path / 'nowhere')
    with pytest.raises(NotADirectoryError, match='f_000.png is not a folder'):
        FolderFrames(tmp_path / 'f_000.png')
