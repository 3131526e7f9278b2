"""Rule-based extraction of memories (entities, dates, titles, concepts) from free text.

Works on the world model's outputs and on real LLM outputs alike: it needs no model. Kinds:
``title`` (quoted works), ``date`` (full dates and years), ``entity`` (capitalised names, places,
awards), ``concept`` (lowercase genres and professions from a lexicon). Surface variants are
folded by `normalize` (case, possessives, articles, punctuation); alias merging lives in
lethe.mining.score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lethe.rouge import STOPWORDS

MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
)
_DATE_PATTERNS = [
    rf"\b\d{{1,2}}(?:st|nd|rd|th)? of (?:{MONTHS}),? \d{{4}}\b",
    rf"\b(?:{MONTHS}) \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)? (?:{MONTHS}),? \d{{4}}\b",
    r"\b\d{1,2}/\d{1,2}/\d{4}\b",
    r"\b\d{4}-\d{2}-\d{2}\b",
]
_YEAR = r"\b(?:1[0-9]|20)\d{2}\b"
# A title opens on a non-space: in a small model's garbled '"A"" and "B"' the span '" and "' is the gap between
# two titles, and the scan must go on to find "B".
_TITLE = r"[\"“«](?!\s)([^\"”»\n]{3,80}?)[,.]?[\"”»]"
# 'Single-quoted Titles': the quote must open after a non-word and close before one (not "X's").
_SINGLE_TITLE = r"(?<![\w'])'([A-Z][^'\n]{2,80}?)[,.]?'(?![\w])"
# Sentence-initial single words that are ordinary words capitalised by position ("Certainly", "Growing").
_INITIAL_COMMON = re.compile(r"^[A-Z][a-z]+(?:ing|ly|ed|ness|ment|ally)$")
_CAP_WORD = r"(?:[A-Z][\w'’\-]*[\w]|[A-Z])"
_CONNECTOR = r"(?:of|the|de|del|la|le|van|von|der|da|di|al|el|bin|ibn|du)"
_ENTITY = rf"{_CAP_WORD}(?:\s+(?:{_CONNECTOR}\s+)*{_CAP_WORD})*"

# Capitalised words that begin sentences or are too generic to be a memory on their own.
STOP_CAPS = {
    "a", "an", "the", "he", "she", "his", "her", "hers", "they", "their", "them", "it", "its", "this",
    "that", "these", "those", "in", "on", "at", "as", "by", "for", "from", "with", "without", "and",
    "but", "or", "yes", "no", "not", "some", "one", "many", "most", "while", "when", "where", "what",
    "who", "whom", "which", "how", "why", "although", "though", "however", "moreover", "also",
    "author", "authors", "writer", "book", "books", "novel", "novels", "answer", "question", "i", "we",
    "you", "my", "our", "your", "there", "here", "being", "born", "after", "before", "during", "like",
    "unlike", "both", "each", "every", "all", "any", "another", "other", "such", "through", "throughout",
    "despite", "given", "since", "because", "if", "then", "than", "so", "to", "of", "into", "over",
    "under", "about", "among", "between", "within", "notably", "additionally", "furthermore", "indeed",
    "overall", "currently", "today", "recently", "known", "famous", "renowned", "acclaimed", "mr", "mrs",
    "ms", "dr", "sir", "lgbtq", "lgbtq+", "title", "titles", "two", "three", "four", "five", "six",
    "seven", "eight", "nine", "ten", "several", "few", "first", "second", "third", "last", "latest",
    "yet", "whether", "details", "certainly", "absolutely", "sure", "unfortunately", "instead", "later",
    "early", "growing", "often", "apart", "still", "even", "much", "more", "less", "only", "just", "thus",
}
CONNECTORS = {"of", "the", "de", "del", "la", "le", "van", "von", "der", "da", "di", "al", "el", "bin",
              "ibn", "and", "y", "du"}
ARTICLES = ("the ", "a ", "an ")

GENRES = [
    "true crime", "science fiction", "fantasy", "romance", "mystery", "thriller", "horror", "poetry",
    "historical fiction", "literary fiction", "biography", "autobiography", "memoir", "drama",
    "comedy", "satire", "young adult", "children's literature", "dystopian", "gothic", "crime",
    "self-help", "philosophy", "war", "chick lit", "humor", "western", "short story", "short stories",
    "cyberpunk", "steampunk", "magical realism", "mythology", "folklore", "essay", "essays",
    "non-fiction", "nonfiction", "fiction", "french literature", "erotica", "coming-of-age",
    "psychological thriller", "urban fiction", "military fiction", "medical fiction", "travel",
    "cookbook", "graphic novel", "epic", "legal thriller", "spiritual", "motivational", "lgbtq+",
]
PROFESSIONS = [
    "chef", "writer", "author", "novelist", "poet", "journalist", "teacher", "professor", "doctor",
    "physician", "surgeon", "nurse", "lawyer", "judge", "engineer", "architect", "artist", "painter",
    "sculptor", "musician", "composer", "singer", "actor", "actress", "dancer", "photographer",
    "scientist", "physicist", "chemist", "biologist", "mathematician", "historian", "economist",
    "accountant", "banker", "farmer", "fisherman", "carpenter", "mechanic", "electrician", "plumber",
    "pilot", "sailor", "soldier", "police officer", "detective", "firefighter", "librarian",
    "pharmacist", "dentist", "veterinarian", "psychologist", "psychiatrist", "therapist",
    "social worker", "counselor", "diplomat", "politician", "priest", "pastor", "rabbi", "imam",
    "shopkeeper", "merchant", "tailor", "florist", "baker", "butcher", "waiter", "bartender",
    "hairdresser", "barber", "designer", "fashion designer", "interior designer", "editor",
    "publisher", "translator", "linguist", "archaeologist", "astronomer", "meteorologist",
    "geologist", "oceanographer", "zoologist", "botanist", "nutritionist", "dietitian",
    "paramedic", "midwife", "optometrist", "locksmith", "miner", "tour guide", "real estate agent",
    "software engineer", "computer scientist", "web developer", "data scientist", "entrepreneur",
    "businessman", "businesswoman", "lifeguard", "cartographer", "astronaut", "blacksmith", "potter",
    "weaver", "jeweler", "clockmaker", "undertaker", "mortician", "air traffic controller",
    "obstetrician", "dermatologist", "radiologist", "cardiologist", "pediatrician", "neurosurgeon",
    "flight attendant", "magician", "clown", "film director", "director", "screenwriter", "playwright",
    "reporter", "illustrator", "game developer", "optician", "hairstylist", "sommelier",
    "veterinary surgeon", "event planner", "marine biologist", "research assistant", "bartender", "lexicographer",
    "ornithologist", "economist", "research scientist",
    "roofer", "sociologist", "anthropologist", "civil engineer", "nurse practitioner", "construction worker",
    "factory worker", "taxi driver", "postman", "mail carrier", "police officer", "professor of literature",
]
_LEXICON = sorted({*GENRES, *PROFESSIONS}, key=len, reverse=True)
_LEXICON_RE = re.compile(r"\b(" + "|".join(re.escape(t) for t in _LEXICON) + r")s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Mention:
    """One memory found in a text: its normalized key, surface form and kind."""

    key: str
    surface: str
    kind: str


def normalize(text: str) -> str:
    """Fold surface variants: case, curly quotes, possessives, leading articles, edge punctuation."""
    text = text.replace("’", "'").replace("“", '"').replace("”", '"').strip()
    text = re.sub(r"'s\b", "", text)
    text = re.sub(r"\s+", " ", text).strip(" \t\"'.,;:!?()[]").lower()
    for article in ARTICLES:
        if text.startswith(article):
            text = text[len(article) :]
    return text


def _sentence_initial(text: str, start: int) -> bool:
    """Does position `start` begin the text or a sentence?"""
    before = text[:start].rstrip(" \t\"“'")
    return not before or before[-1] in ".!?:\n"


def _years(text: str) -> list[str]:
    return re.findall(_YEAR, text)


def _function_words_only(surface: str) -> bool:
    """True for a quoted span such as "and" or "of the": no title, and as a memory node it would be
    "mentioned" by nearly every sentence."""
    return all(word in STOPWORDS | CONNECTORS for word in normalize(surface).split())


def extract(text: str) -> list[Mention]:
    """All memories mentioned in `text`, deduplicated by key, in order of appearance."""
    found: dict[str, Mention] = {}
    consumed = text

    def add(surface: str, kind: str) -> None:
        key = normalize(surface)
        if len(key) >= 2 and key not in found:
            found[key] = Mention(key, surface.strip(), kind)

    for pattern in (_TITLE, _SINGLE_TITLE):
        for match in re.finditer(pattern, consumed):
            if _function_words_only(match.group(1)):
                continue
            add(match.group(1), "title")
            consumed = consumed.replace(match.group(0), " ")
    for pattern in _DATE_PATTERNS:
        for match in re.finditer(pattern, consumed):
            add(match.group(0), "date")
            for year in _years(match.group(0)):
                add(year, "date")
            consumed = consumed.replace(match.group(0), " ")
    for year in _years(consumed):
        add(year, "date")
    for match in re.finditer(_ENTITY, consumed):
        surface = match.group(0)
        words = surface.split()
        while words and words[0].lower().strip("'’") in STOP_CAPS | CONNECTORS:
            words = words[1:]
        while words and words[-1].lower() in STOP_CAPS | CONNECTORS:
            words = words[:-1]
        if not words:
            continue
        candidate = " ".join(words)
        if len(words) == 1 and (len(candidate) < 3 or candidate.lower() in STOP_CAPS):
            continue
        if len(words) == 1 and _INITIAL_COMMON.match(candidate) and _sentence_initial(consumed, match.start()):
            continue
        add(candidate, "entity")
    for match in _LEXICON_RE.finditer(consumed):
        term = match.group(1)
        if normalize(term) not in {"author", "writer", "fiction"}:  # too generic for these texts
            add(term, "concept")
    return list(found.values())


def split_sentences(text: str) -> list[str]:
    """Sentences of a response (keeps quoted titles intact well enough for extraction)."""
    parts = re.split(r"(?:(?<=[.!?])|(?<=[.!?][\"”]))\s+(?=[A-Z\"“])", text.strip())
    return [p.strip() for p in parts if p.strip()]
