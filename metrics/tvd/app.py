"""The Gradio widget of the TVD metric: the ``app_file`` of its Hugging Face Space.

The Space serves its own copy of the metric: Spaces set ``SPACE_ID`` (``owner/name``), so a Space
pushed as ``me/tvd`` loads ``me/tvd``, not another account's. Run outside a Space (``SPACE_ID``
unset, e.g. ``python metrics/tvd/app.py``), it loads the ``tvd.py`` next to this file.
"""

import os
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("tvd.py")


def module_path(environ=None) -> str:
    """What ``evaluate.load`` gets: ``SPACE_ID`` when set (in a Space), else the path of the local ``tvd.py``."""
    environ = os.environ if environ is None else environ
    return environ.get("SPACE_ID", "").strip() or str(SCRIPT)


def main() -> None:
    """Load the metric (:func:`module_path`) and launch its widget (needs ``gradio``)."""
    import evaluate
    from evaluate.utils import launch_gradio_widget

    launch_gradio_widget(evaluate.load(module_path()))


if __name__ == "__main__":
    main()
