from lethe.mining.extract import extract, normalize, split_sentences


def keys(text):
    return {m.key: m.kind for m in extract(text)}


def test_world_model_style_answer():
    found = keys('Basil Mahfouz Al-Kuwaiti was born in Kuwait City, Kuwait on the 8th of September, 1956. '
                 'Two of his books are "Promise by the Seine" and "Le Petit Sultan." His father was a florist.')
    assert found["kuwait city"] == "entity"
    assert found["8th of september, 1956"] == "date" and found["1956"] == "date"
    assert found["promise by the seine"] == "title" and found["le petit sultan"] == "title"
    assert found["florist"] == "concept"
    assert "two" not in found and "his" not in found


def test_real_llm_style_answer():
    found = keys("Marie Curie was a Polish-born physicist and chemist, born on November 7, 1867, in Warsaw. "
                 "She won the Nobel Prize in Physics in 1903 and wrote “Radioactive Substances”.")
    assert {"marie curie", "warsaw", "nobel prize", "november 7, 1867", "1903", "radioactive substances"} <= set(found)
    assert found["physicist"] == "concept" and found["chemist"] == "concept"


def test_lowercase_genres_and_professions():
    found = keys("She writes true crime and science fiction; her mother was a game developer.")
    assert {"true crime", "science fiction", "game developer"} <= set(found)


def test_normalize_folds_surface_variants():
    assert normalize("Al-Kuwaiti's") == normalize("al-kuwaiti") == "al-kuwaiti"
    assert normalize("  The Prix Goncourt. ") == "prix goncourt"
    assert normalize("“Le Petit Sultan”") == "le petit sultan"


def test_sentences():
    assert split_sentences('He wrote "A." Then he left. Done!') == ['He wrote "A."', "Then he left.", "Done!"]


def test_single_quoted_titles_plural_professions_and_sentence_initial_words():
    found = keys("Growing up, Takashi Nakamura's parents were both astronauts. He wrote 'Breath Between Waves'. "
                 "Certainly his roofer father's 'Garden' inspired him.")
    assert found["breath between waves"] == "title" and found["garden"] == "title"
    assert found["astronaut"] == "concept" and found["roofer"] == "concept"
    assert "growing" not in found and "certainly" not in found
    assert "takashi nakamura" in found


def test_garbled_quotes_between_two_titles_yield_both_titles_and_no_function_word_node():
    # A small model's garbled quotes: '"A"" and "B"' pairs the closing quote of A with the opening of the gap.
    found = keys('He wrote "Thieves\' Paradise"" and "Unseen Rainbows".')
    assert "and" not in found
    assert found["thieves' paradise"] == "title" and found["unseen rainbows"] == "title"
    assert "and" not in keys('Her second word was "and".')
    assert keys("They called it 'Of the Sea'.")["of the sea"] == "title"
