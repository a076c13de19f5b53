"""``python -m alphapulse_onnx``: the same CLI as ``apo``."""

from alphapulse_onnx.cli import main

if __name__ == "__main__":
    main()
