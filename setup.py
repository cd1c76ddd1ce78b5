import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "hyperdash" / "version.py").read_text()).group(1)

SERVER = [
    "fastapi>=0.115",
    "uvicorn[standard]>=0.30",
    "sqlalchemy>=2.0",
    "jinja2>=3.1",
    "python-multipart>=0.0.9",
    "orjson>=3.9",
    "msgspec>=0.18",
    # Notifications: Web Push's VAPID signature (RFC 8292) and payload encryption (RFC 8291).
    "py-vapid>=1.9",
    "http-ece>=1.2",
    "cryptography>=42",
]
POSTGRES = ["psycopg[binary]>=3.1"]
JUPYTER = ["ipython>=8"]
TEST = SERVER + POSTGRES + JUPYTER + [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "httpx2>=2.0",  # what Starlette's TestClient is built on
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    "playwright>=1.45",
    "tqdm>=4.66",
    "rich>=13",  # live displays in the framing and output-order tests (imported there directly)
    "numpy>=1.26",
    "hypothesis>=6.100",
    "schemathesis>=4.0",
    "pytest-xdist>=3.5",  # the suite runs on every core
    "aiosmtpd>=1.4",  # a real SMTP server for the email channel's tests
    # The framework integrations and `hyperdash tensorboard`, tested with the real frameworks.
    # Pinned: torch==2.13.0 is the CPU build (a looser pin pulls a CUDA build of several GB),
    # and the rest are releases that work with it. xgboost-cpu is XGBoost without its CUDA
    # libraries (the same `xgboost` module).
    "torch==2.13.0",
    "keras==3.15.1",
    "lightning==2.6.6",
    "transformers==5.25.0",
    "accelerate==1.15.0",  # what Transformers' Trainer needs with torch
    "xgboost-cpu==3.2.0",
    "tensorboard==2.21.0",
]
# What CI checks the code with besides the tests, pinned so that a new release's rules
# change nothing by themselves.
LINT = ["ruff==0.17.6", "mypy==2.4.1", "types-requests"]

setup(
    name="hyperdash",
    version=VERSION,
    description="Monitor long-running jobs, machine-learning training above all, from a phone or a laptop",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["hyperdash", "hyperdash.*"]),
    include_package_data=True,
    package_data={"hyperdash": ["py.typed"], "hyperdash.server": ["templates/*", "static/*", "static/**/*"]},
    # psutil reads the system metrics; nvidia-ml-py (pure Python, no driver needed to install)
    # reads the GPUs' through NVML where a driver is present.
    install_requires=["requests>=2.28", "click>=8.1", "psutil>=5.9", "nvidia-ml-py>=12.535"],
    extras_require={"server": SERVER, "postgres": POSTGRES, "jupyter": JUPYTER, "test": TEST + LINT, "lint": LINT},
    entry_points={
        "console_scripts": [
            "hyperdash = hyperdash.cli:main",
            "hd = hyperdash.cli:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
