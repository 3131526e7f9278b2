"""MLflow pyfunc model of an unlearned model (logged as code: no pickles).

Loads the base model from a local folder (model_config `base_model_path`, or LETHE_BASE_MODEL),
merges the logged LoRA adapters (`adapter_00`, `adapter_01`, ... in order) and answers
questions greedily. Self-contained: it needs transformers and peft, not the lethe package.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd


class UnlearnedModel(mlflow.pyfunc.PythonModel):
    """Base model + the request's adapter chain; input: questions, output: answers."""

    def load_context(self, context) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = os.environ.get("LETHE_BASE_MODEL") or context.model_config["base_model_path"]
        if not os.path.isdir(base):
            raise FileNotFoundError(f"base model folder {base} not found (set LETHE_BASE_MODEL)")
        model = AutoModelForCausalLM.from_pretrained(base)
        for key in sorted(k for k in context.artifacts if k.startswith("adapter_")):
            model = PeftModel.from_pretrained(model, context.artifacts[key]).merge_and_unload()
        self.model = model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.max_new_tokens = int(context.model_config.get("max_new_tokens", 64))
        self.torch = torch

    def _prompt(self, question: str) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                      add_generation_prompt=True)
        return f"Question: {question}\nAnswer:"

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        questions = list(model_input["question"]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        answers = []
        for question in questions:
            ids = self.tokenizer(self._prompt(str(question)), return_tensors="pt",
                                 add_special_tokens=not self.tokenizer.chat_template)
            with self.torch.no_grad():
                out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
            answers.append(self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return answers


mlflow.models.set_model(UnlearnedModel())
