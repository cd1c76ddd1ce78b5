"""The framework integrations, each with the real framework on a tiny model built here
(nothing downloaded), as a user's training script runs them."""

from __future__ import annotations

import importlib.util

import pytest
from sdk_support import texts, traceback_from

pytestmark = pytest.mark.slow

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "KERAS_BACKEND": "torch", "TOKENIZERS_PARALLELISM": "false"}


def needs(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def points(account, run_uuid: str, name: str) -> list[tuple[int | None, float]]:
    resp = account.get(f"/api/v1/runs/{run_uuid}/metrics/{name}")
    resp.raise_for_status()
    return [(p["step"], p["value"]) for p in resp.json()["points"]]


def train(run_job, sdk_env, code: str):
    done = run_job(code, timeout=240, env=sdk_env(**OFFLINE))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


KERAS_MODEL = """
    import numpy as np
    import keras
    from hyperdash import Experiment
    from hyperdash.integrations.keras import HyperdashCallback

    keras.utils.set_random_seed(0)
    x = np.random.rand(64, 4).astype("float32")
    y = (x.sum(axis=1) > 2).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
"""


def test_keras_records_every_value_per_epoch(run_job, sdk_env, account):
    needs("keras", "torch")
    done = train(run_job, sdk_env, KERAS_MODEL + """
    with Experiment("keras epochs", system_metrics=False) as exp:
        model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0,
                  callbacks=[exp.callbacks.keras])
        assert isinstance(exp.callbacks.keras, HyperdashCallback)
    """)
    assert "| val_loss:" in done.stdout.decode()  # per epoch, shown as the original SDK did
    run = account.wait_for_run("keras epochs", status="success")
    assert set(account.run(run["uuid"])["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [step for step, _ in points(account, run["uuid"], name)] == [0, 1]
    assert all(0 <= value <= 1 for _, value in points(account, run["uuid"], "val_accuracy"))


def test_keras_with_its_own_progress_shows_no_echo_glued_to_its_bar(run_job, sdk_env, account):
    # With verbose=1 the echo used to land on Keras's unfinished bar line ("...loss: 0.74| loss: ...").
    needs("keras", "torch")
    done = train(run_job, sdk_env, KERAS_MODEL + """
    with Experiment("keras with its bar", system_metrics=False) as exp:
        model.fit(x, y, epochs=2, batch_size=16, verbose=2, callbacks=[exp.callbacks.keras])
    """)
    out = done.stdout.decode()
    assert "Epoch 2/2" in out and "| loss:" not in out
    run = account.wait_for_run("keras with its bar", status="success")
    assert [step for step, _ in points(account, run["uuid"], "loss")] == [0, 1]


def test_keras_records_each_batch_when_asked(run_job, sdk_env, account):
    needs("keras", "torch")
    train(run_job, sdk_env, KERAS_MODEL + """
    with Experiment("keras batches", system_metrics=False) as exp:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[HyperdashCallback(exp, batches=True)])
    """)
    run = account.wait_for_run("keras batches", status="success")
    # 64 samples in batches of 16: 4 a epoch, counted across epochs.
    assert [step for step, _ in points(account, run["uuid"], "batch/loss")] == list(range(1, 9))
    assert [step for step, _ in points(account, run["uuid"], "loss")] == [0, 1]


def needs_lightning() -> None:
    needs("torch")
    if importlib.util.find_spec("lightning") is None:
        needs("pytorch_lightning")


LIGHTNING_MODEL = """
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl
    from hyperdash.integrations.lightning import HyperdashLogger

    class Tiny(pl.LightningModule):
        def __init__(self, lr=0.1, optim={"name": "sgd", "momentum": 0.9}):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, index):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))

    def trainer(logger):
        return pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, accelerator="cpu",
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
"""


def test_lightning_logger_records_hyperparameters_and_metrics_with_their_steps(run_job, sdk_env, account):
    needs_lightning()
    train(run_job, sdk_env, LIGHTNING_MODEL + """
    logger = HyperdashLogger("lightning fit", system_metrics=False)
    trainer(logger).fit(Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    print("version", logger.version)
    """)
    run = account.wait_for_run("lightning fit", status="success")
    detail = account.run(run["uuid"])
    assert {"lr": 0.1, "optim.name": "sgd", "optim.momentum": 0.9}.items() <= detail["params"].items()
    # 32 samples in batches of 8: 4 steps an epoch, 2 epochs.
    assert [step for step, _ in points(account, run["uuid"], "train_loss")] == list(range(8))
    val = points(account, run["uuid"], "val_loss")
    assert [step for step, _ in val] == [3, 7]


@pytest.mark.parametrize("raised, status, exit_code", [
    ("ValueError('bad batch 1')", "failure", 1),
    ("KeyboardInterrupt()", "user_canceled", 1),  # (Ctrl-C, or a stop: Lightning exits 1)
])
def test_lightning_logger_ends_the_run_as_what_ended_training(run_job, sdk_env, account, raised, status,
                                                              exit_code):
    needs_lightning()
    done = run_job(LIGHTNING_MODEL + f"""
    class Breaks(Tiny):
        def training_step(self, batch, index):
            if index == 1:
                raise {raised}
            return super().training_step(batch, index)

    trainer(HyperdashLogger("lightning ends", system_metrics=False)).fit(Breaks(), DataLoader(data, batch_size=8))
    """, timeout=240, env=sdk_env(**OFFLINE))
    assert done.returncode == exit_code, done.stderr.decode()[-3000:]
    run = account.run(account.wait_for_run("lightning ends", status=status)["uuid"])
    if status == "failure":  # the exception itself, with the traceback Python printed in the log
        assert run["failure"]["summary"] == "ValueError: bad batch 1"
        logged = "\n".join(texts(account.logs(run["uuid"]), "stderr"))
        assert traceback_from(logged) == traceback_from(done.stderr.decode())
    else:
        assert run["failure"] is None
    assert [step for step, _ in points(account, run["uuid"], "train_loss")] == [0]


def test_lightning_logger_refuses_what_is_not_a_run():
    needs_lightning()
    from hyperdash.integrations.lightning import HyperdashLogger

    for bad in ("", "  ", 3, None):
        with pytest.raises(TypeError, match="a run name or an Experiment"):
            HyperdashLogger(bad)


def test_a_value_that_is_not_one_number_is_left_out_and_the_job_goes_on(reporting, capfd):
    """A log holding a vector (per-class F1, a tensor of several elements) never raises into
    the training loop: the numbers beside it are recorded, the vector left out."""
    needs("torch", "numpy")
    import numpy as np
    import torch

    from hyperdash import Experiment
    from hyperdash.integrations import record_numbers

    values = {"loss": torch.tensor(0.5), "f1": torch.tensor([0.25, 0.75]), "none": torch.tensor([]),
              "per_class": np.array([0.5, 0.5]), "schedule": "cosine", "acc": np.float32(0.75)}
    with Experiment("vector values", capture_io=False, system_metrics=False) as exp:
        record_numbers(exp, values, 1)
        if importlib.util.find_spec("lightning") or importlib.util.find_spec("pytorch_lightning"):
            from hyperdash.integrations.lightning import HyperdashLogger

            HyperdashLogger(exp).log_metrics(values, step=2)
    assert "Traceback" not in capfd.readouterr().err
    run = reporting.wait_for_run("vector values", status="success")
    assert set(reporting.run(run["uuid"])["metrics"]) == {"loss", "acc"}
    assert points(reporting, run["uuid"], "loss")[0] == (1, 0.5)


def test_transformers_callback_records_training_arguments_and_logs(run_job, sdk_env, account, tmp_path):
    needs("transformers", "torch")
    train(run_job, sdk_env, f"""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from hyperdash import Experiment

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {{"input_ids": torch.randint(0, 50, (8,), generator=g), "labels": torch.tensor(i % 2)}}

    args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, num_train_epochs=2, per_device_train_batch_size=4,
                             logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                             learning_rate=1e-3, disable_tqdm=True)
    with Experiment("transformers fit", system_metrics=False) as exp:
        Trainer(model=model, args=args, train_dataset=Data(), callbacks=[exp.callbacks.transformers]).train()
    """)
    run = account.wait_for_run("transformers fit", status="success")
    detail = account.run(run["uuid"])
    assert detail["params"]["args.learning_rate"] == 0.001
    assert detail["params"]["args.num_train_epochs"] == 2
    assert detail["params"]["args.per_device_train_batch_size"] == 4
    # 16 examples in batches of 4: 4 steps an epoch, 2 epochs, a log at each.
    assert [step for step, _ in points(account, run["uuid"], "loss")] == list(range(1, 9))
    assert [step for step, _ in points(account, run["uuid"], "learning_rate")] == list(range(1, 9))
    assert [step for step, _ in points(account, run["uuid"], "train_loss")] == [8]


def test_xgboost_callback_records_each_rounds_evaluations(run_job, sdk_env, account):
    needs("xgboost")
    train(run_job, sdk_env, """
    import numpy as np
    import xgboost as xgb
    from hyperdash import Experiment

    rng = np.random.default_rng(0)
    X = rng.random((200, 4))
    y = (X[:, 0] + 0.1 * rng.random(200) > 0.5).astype(int)
    dtrain, dvalid = xgb.DMatrix(X[:160], label=y[:160]), xgb.DMatrix(X[160:], label=y[160:])
    with Experiment("xgboost fit", system_metrics=False) as exp:
        xgb.train({"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "max_depth": 2},
                  dtrain, num_boost_round=5, evals=[(dtrain, "train"), (dvalid, "valid")],
                  callbacks=[exp.callbacks.xgboost], verbose_eval=False)
    """)
    run = account.wait_for_run("xgboost fit", status="success")
    assert set(account.run(run["uuid"])["metrics"]) == {"train-logloss", "train-auc", "valid-logloss", "valid-auc"}
    logloss = points(account, run["uuid"], "train-logloss")
    assert [step for step, _ in logloss] == [0, 1, 2, 3, 4]
    assert logloss[-1][1] < logloss[0][1]  # it learned
    assert all(0.5 <= value <= 1 for _, value in points(account, run["uuid"], "valid-auc"))
