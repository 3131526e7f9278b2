"""How a question and an answer become token ids, for any causal LM.

Models whose tokenizer has a chat template (instruction models, and the world model, whose
template renders its QA format) are prompted through it; base models get a plain
``Question: ...\\nAnswer:`` completion prompt. The answer ids are exactly the tokens the model
produces after the prompt, end-of-turn included, so log-probs and losses are taken on the answer
span only.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase


def render_prompt(question: str) -> str:
    """The plain completion prompt (base models), also exactly what the world model's chat template
    renders for one user turn (without BOS)."""
    return f"Question: {question.strip()}\nAnswer:"


@dataclass(frozen=True)
class EncodedQA:
    """Prompt and answer token ids of one QA pair; `loss_mask`, where given, says which answer tokens
    are trained on (the rest are not labels)."""

    prompt_ids: list[int]
    answer_ids: list[int]
    loss_mask: tuple[bool, ...] | None = None


class PromptFormat:
    """Renders questions (and answers) for one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.uses_chat_template = bool(getattr(tokenizer, "chat_template", None))

    def prompt_text(self, question: str) -> str:
        """The text the model continues to answer `question`."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
            )
        return render_prompt(question)

    def prompt_ids(self, question: str) -> list[int]:
        """Token ids of the prompt (special tokens as the template or tokenizer puts them)."""
        text = self.prompt_text(question)
        return self.tokenizer(text, add_special_tokens=not self.uses_chat_template)["input_ids"]

    def answer_text(self, question: str, answer: str) -> str:
        """What follows the prompt when the model gives `answer`, end-of-turn marker included."""
        if self.uses_chat_template:
            prompt = self.prompt_text(question)
            full = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                tokenize=False,
            )
            if full.startswith(prompt):
                return full[len(prompt) :]
        return " " + answer.strip() + (self.tokenizer.eos_token or "")

    def encode(self, question: str, answer: str) -> EncodedQA:
        """Prompt and answer ids, tokenized separately so the answer span is exact."""
        answer_ids = self.tokenizer(self.answer_text(question, answer), add_special_tokens=False)["input_ids"]
        return EncodedQA(self.prompt_ids(question), answer_ids)
