import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("varylm/tvd")
launch_gradio_widget(module)
