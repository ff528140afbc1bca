"""The progress-bar wrapper: quiet on non-terminal streams, normal on terminals."""
import io

from gnn_truss.progress import NON_TTY_INTERVAL, progress_bar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _run(stream, n=2000):
    bar = progress_bar(total=n, desc="work", file=stream, ascii=True)
    for _ in range(n):
        bar.update(1)
    bar.close()
    return stream.getvalue()


def test_non_terminal_stream_gets_few_updates():
    out = _run(io.StringIO())
    assert progress_bar(total=1, file=io.StringIO()).mininterval == NON_TTY_INTERVAL
    # the first and the final state only (a fast loop stays inside the interval)
    assert out.count("\r") <= 3 and "2000/2000" in out


def test_terminal_stream_and_explicit_interval_are_left_alone():
    assert progress_bar(total=1, file=_Tty()).mininterval == 0.1  # tqdm's default
    assert progress_bar(total=1, file=io.StringIO(), mininterval=2.0).mininterval == 2.0
