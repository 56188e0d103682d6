"""The Qt main thread never imports torch nor asks CUDA anything while the studio starts: the
model thread does (importing torch takes seconds, and the thread that first touches CUDA pays
for creating its context), so the window is drawn and answers at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter (this one has torch loaded already). An import hook records the
# thread that first imports torch, and wraps torch.cuda's device and context functions, as
# torch.cuda is loaded, to record the thread of every call.
SCRIPT = textwrap.dedent("""
    import importlib.abc, importlib.machinery, json, sys, threading, time

    first_import, cuda_calls = {}, []
    WATCHED = ("is_available", "device_count", "init", "_lazy_init", "current_device", "set_device",
               "get_device_name", "get_device_capability", "get_device_properties", "is_bf16_supported",
               "synchronize", "empty_cache", "mem_get_info", "is_initialized")

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" and not first_import:
                first_import["torch"] = threading.current_thread().name
            if name != "torch.cuda":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                for fn in WATCHED:
                    original = getattr(module, fn, None)
                    if original is not None:
                        def watched(*a, _original=original, _fn=fn, **k):
                            cuda_calls.append([_fn, threading.current_thread().name])
                            return _original(*a, **k)
                        setattr(module, fn, watched)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Watch())

    from fkp_studio.app import init_application
    from fkp_studio.main_window import MainWindow

    app = init_application()
    imported_with_the_studio = "torch" in sys.modules
    window = MainWindow()
    window.questions.unsaved = lambda name: "discard"
    window.show()
    opened = []
    window.datasetOpened.connect(lambda: opened.append(True))
    window.open_dataset(sys.argv[1])
    label = window.status_bar.device_label
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (opened and not label.text().endswith("…")):
        app.processEvents()
        time.sleep(0.01)
    print(json.dumps({"imported_with_the_studio": imported_with_the_studio, "first_import": first_import,
                      "cuda_calls": cuda_calls, "label": label.text(), "opened": bool(opened),
                      "main": threading.main_thread().name}))
    window.close()
""")


def test_the_main_thread_neither_imports_torch_nor_touches_cuda_at_start(dataset):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(dataset["csv"])], env=env, timeout=150,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["opened"] and seen["label"].startswith("Device: ") and seen["label"] != "Device: unknown"
    assert not seen["imported_with_the_studio"]
    # torch came in on the model thread, which also made every CUDA call (at least the
    # availability check behind the device label: the watch did see the calls).
    assert seen["first_import"] == {"torch": "fkp-model"}
    assert seen["cuda_calls"] and {thread for _, thread in seen["cuda_calls"]} == {"fkp-model"}, seen["cuda_calls"]
