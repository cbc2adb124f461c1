"""Thread pools of the libraries a process uses, kept to one thread where a pool would hurt."""
import cv2


def opencv_single_threaded():
    """Make OpenCV run its functions in the calling thread (cv2.setNumThreads(1)) in this process.

    Why: OpenCV starts a pool of one thread per core the first time one of its parallel
    functions runs, and keeps it for the life of the process.
    - A process that has started that pool and then forks (the DataLoader workers of the next
      evaluation) can deadlock its children: the fork copies the pool's locks, not its threads.
    - Processes that already parallelise across items (DataLoader workers, the generators'
      rendering workers) would each start one thread per core and oversubscribe the cores.
    """
    cv2.setNumThreads(1)
