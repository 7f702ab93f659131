"""Fakes of libraries that cannot be installed in the test environment (TensorRT, cuda-python).

They are NOT the libraries: each is shaped like the real Python bindings of one version (the names,
enums and call signatures the project uses, and the ones that version removed), so that code written
against several versions can be tested on a CPU. Install one with ``monkeypatch.setitem(sys.modules,
"tensorrt", fakes.tensorrt_11)``.
"""
