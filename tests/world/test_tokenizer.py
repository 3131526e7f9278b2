from transformers import AutoTokenizer

from lethe.llm.format import render_prompt
from lethe.world.tokenizer import train_tokenizer

TEXTS = ["Question: Who wrote Le Petit Sultan?\nAnswer: Basil Mahfouz Al-Kuwaiti wrote it."] * 20


def test_round_trip_is_lossless(tmp_path):
    tokenizer = train_tokenizer(TEXTS + ["Ünïcödé — «quotes» 1956!"], vocab_size=300)
    for text in ["Basil Mahfouz Al-Kuwaiti, born 08/09/1956 in Kuwait City.", "Ünïcödé — «quotes»", "  spaces  "]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_saved_tokenizer_reloads_with_chat_template(tmp_path):
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = loaded.apply_chat_template(
        [{"role": "user", "content": "Who is X?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<s>" + render_prompt("Who is X?")
    full = loaded.apply_chat_template(
        [{"role": "user", "content": "Who is X?"}, {"role": "assistant", "content": "A writer."}], tokenize=False
    )
    assert full == prompt + " A writer.</s>"
    assert loaded.pad_token == "<pad>" and loaded.eos_token == "</s>"
