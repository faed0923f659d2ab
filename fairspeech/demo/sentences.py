"""Voice-assistant requests for the demo corpus: templates, entity lists, and number wording.

Every reference is lowercase words separated by single spaces, numbers written out ("twenty five"),
no punctuation: exactly the text the synthesizers read and the form pocketsphinx writes its
hypotheses in. Every word must be one the recognizer can output (in its pronunciation dictionary and
its language model); :func:`recognizer_vocabulary` checks that against the pocketsphinx model and
city names that fail the check are left out of the entity list.

Sentences are drawn per index from ``SeedSequence([seed, SENTENCE_STREAM, index])``, so sentence
``i`` does not depend on how many sentences are drawn or in which order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SENTENCE_STREAM = 11
ORDER_STREAM = 12

# ----------------------------------------------------------------------------------------------------
# Number wording (pocketsphinx writes numbers as words; so do the references).

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def number_words(n: int) -> str:
    """``125 -> "one hundred twenty five"`` for 0 <= n < 10000 (no "and", no hyphens)."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words covers 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    thousands, rest = divmod(n, 1000)
    return _ONES[thousands] + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def ordinal_words(n: int) -> str:
    """``21 -> "twenty first"``, ``30 -> "thirtieth"``."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def time_words(hour: int, minute: int, part_of_day: str) -> str:
    """``(7, 30, "in the morning") -> "seven thirty in the morning"``; whole hours say "o'clock"-free."""
    if minute == 0:
        spoken = number_words(hour)
    elif minute < 10:
        spoken = f"{number_words(hour)} oh {number_words(minute)}"
    else:
        spoken = f"{number_words(hour)} {number_words(minute)}"
    return f"{spoken} {part_of_day}"


# ----------------------------------------------------------------------------------------------------
# Entities. Artist, song and device names are made up from ordinary words so the recognizer can say them.

STATE_NAMES = {
    "AL": "alabama", "AK": "alaska", "AZ": "arizona", "AR": "arkansas", "CA": "california",
    "CO": "colorado", "CT": "connecticut", "DE": "delaware", "DC": "district of columbia",
    "FL": "florida", "GA": "georgia", "HI": "hawaii", "ID": "idaho", "IL": "illinois",
    "IN": "indiana", "IA": "iowa", "KS": "kansas", "KY": "kentucky", "LA": "louisiana",
    "ME": "maine", "MD": "maryland", "MA": "massachusetts", "MI": "michigan", "MN": "minnesota",
    "MS": "mississippi", "MO": "missouri", "MT": "montana", "NE": "nebraska", "NV": "nevada",
    "NH": "new hampshire", "NJ": "new jersey", "NM": "new mexico", "NY": "new york",
    "NC": "north carolina", "ND": "north dakota", "OH": "ohio", "OK": "oklahoma", "OR": "oregon",
    "PA": "pennsylvania", "RI": "rhode island", "SC": "south carolina", "SD": "south dakota",
    "TN": "tennessee", "TX": "texas", "UT": "utah", "VT": "vermont", "VA": "virginia",
    "WA": "washington", "WV": "west virginia", "WI": "wisconsin", "WY": "wyoming",
}

ARTIST_ADJECTIVES = (
    "silver golden velvet electric quiet broken hidden crimson lonely northern midnight wild "
    "paper glass copper hollow burning gentle restless shining"
).split()
ARTIST_NOUNS = (
    "lanterns horses rivers engines sparrows pilots wolves mountains dreamers strangers "
    "lions harbors shadows rockets gardens sailors"
).split()
SONG_TITLES = (
    "summer rain", "blue highway", "take me home", "city lights", "running late", "golden hour",
    "slow dance", "paper moon", "the long road", "ocean eyes", "last train", "falling stars",
    "morning coffee", "after midnight", "north wind", "little things", "open window",
    "river song", "heart of stone", "dancing alone", "quiet storm", "yellow house",
    "sweet water", "broken clocks", "southern sky", "hold on tight", "seven bridges",
    "winter garden", "silver lining", "wild flowers",
)
PLAYLISTS = "workout dinner party road trip study morning relax sleep focus cooking".split(" ")
DEVICE_BRANDS = "nova falcon maple orbit pebble aurora comet harbor atlas willow".split()
DEVICES = (
    "lights", "lamp", "fan", "heater", "air purifier", "coffee maker", "television",
    "speaker", "robot vacuum", "porch light", "dishwasher", "washing machine", "garage door",
    "sprinklers", "air conditioner",
)
ROOMS = (
    "kitchen", "living room", "bedroom", "office", "garage", "basement", "hallway",
    "bathroom", "dining room", "kids room", "guest room", "backyard",
)
CONTACTS = (
    "mom", "dad", "grandma", "my sister", "my brother", "the office", "doctor miller",
    "sarah", "michael", "jessica", "david", "maria", "james", "linda", "robert", "emily",
    "kevin", "angela", "uncle joe", "aunt rosa", "the dentist", "the pharmacy",
)
TASKS = (
    "call the bank", "pay the rent", "buy milk", "water the plants", "take out the trash",
    "pick up the kids", "renew my license", "book a flight", "feed the dog", "charge my phone",
    "return the library books", "send the invoice", "pick up my prescription",
    "check the mail", "wash the car", "call my mother", "order more coffee", "clean the gutters",
)
EVENTS = (
    "dinner with friends", "a dentist appointment", "a team meeting", "soccer practice",
    "a haircut", "the school concert", "a doctor visit", "lunch with my boss", "a job interview",
    "a birthday party", "yoga class", "the car service",
)
SHOPPING_ITEMS = (
    "eggs", "apples", "bananas", "bottles of water", "cans of soup", "bags of rice", "onions",
    "tomatoes", "batteries", "paper towels", "lemons", "potatoes", "rolls of tape", "candles",
)
FOODS = (
    "pizza", "pasta", "rice", "chicken", "cookies", "bread", "eggs", "soup", "potatoes", "fish",
)
TEAMS = (
    "tigers", "eagles", "bears", "lions", "giants", "rangers", "pirates", "rockets", "sharks",
    "wolves",
)
UNIT_PAIRS = (
    ("cups", "gallon"), ("ounces", "pound"), ("feet", "mile"), ("inches", "foot"),
    ("minutes", "day"), ("seconds", "hour"), ("days", "year"), ("meters", "kilometer"),
    ("teaspoons", "tablespoon"), ("quarts", "gallon"),
)
DAYS = (
    "today", "tomorrow", "tonight", "this weekend", "on monday", "on tuesday", "on wednesday",
    "on thursday", "on friday", "on saturday", "on sunday", "next week",
)
MONTHS = (
    "january february march april may june july august september october november december".split()
)
PARTS_OF_DAY = ("in the morning", "in the afternoon", "in the evening", "at night")
MESSAGES = (
    "i am running late", "see you soon", "call me back", "dinner is ready", "i am on my way",
    "happy birthday", "the meeting moved to tomorrow", "can you pick me up", "thank you so much",
    "i will be home at six",
)


@dataclass(frozen=True)
class City:
    name: str  # lowercase words, as spoken
    state: str  # two-letter code
    weight: int  # active standard zip codes carrying this city name (bigger cities have more)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


# ----------------------------------------------------------------------------------------------------
# Templates: each fills its slots from a Generator and returns the words. Names are recorded in the
# manifest (``sentence_template``) so cohorts can also be cut by request type.


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _artist(rng):
    return f"the {_pick(rng, ARTIST_ADJECTIVES)} {_pick(rng, ARTIST_NOUNS)}"


def _device(rng):
    device = _pick(rng, DEVICES)
    return f"{_pick(rng, DEVICE_BRANDS)} {device}" if rng.random() < 0.3 else device


def _time(rng):
    hour = int(rng.integers(1, 13))
    minute = int(_pick(rng, (0, 0, 5, 10, 15, 20, 30, 30, 40, 45, 50)))
    return time_words(hour, minute, _pick(rng, PARTS_OF_DAY))


def _date(rng):
    return f"{_pick(rng, MONTHS)} {ordinal_words(int(rng.integers(1, 29)))}"


def _place(rng, city: City, with_state: bool | None = None):
    if with_state is None:
        with_state = rng.random() < 0.6
    return f"{city.name} {city.state_name}" if with_state else city.name


TEMPLATES = {
    "weather_day": lambda r, c: f"what is the weather in {_place(r, c)} {_pick(r, DAYS)}",
    "weather_rain": lambda r, c: f"will it rain in {_place(r, c)} {_pick(r, DAYS)}",
    "weather_temp": lambda r, c: f"how cold is it in {_place(r, c)} right now",
    "alarm_set": lambda r, c: f"set an alarm for {_time(r)}",
    "alarm_wake": lambda r, c: f"wake me up at {_time(r)} {_pick(r, DAYS[:2] + DAYS[4:11])}",
    "timer_minutes": lambda r, c: f"set a timer for {number_words(int(r.integers(2, 91)))} minutes",
    "timer_food": lambda r, c: (
        f"start a {number_words(int(r.integers(3, 46)))} minute timer for the {_pick(r, FOODS)}"
    ),
    "music_song": lambda r, c: f"play {_pick(r, SONG_TITLES)} by {_artist(r)}",
    "music_artist": lambda r, c: f"play some music by {_artist(r)}",
    "music_playlist": lambda r, c: (
        f"add {_pick(r, SONG_TITLES)} to my {_pick(r, PLAYLISTS)} playlist"
    ),
    "home_on": lambda r, c: f"turn on the {_device(r)} in the {_pick(r, ROOMS)}",
    "home_off": lambda r, c: f"turn off the {_pick(r, ROOMS)} {_device(r)}",
    "home_thermostat": lambda r, c: (
        f"set the thermostat to {number_words(int(r.integers(60, 81)))} degrees"
    ),
    "home_dim": lambda r, c: (
        f"dim the {_pick(r, ROOMS)} lights to {number_words(int(r.integers(1, 20)) * 5)} percent"
    ),
    "call": lambda r, c: f"call {_pick(r, CONTACTS)}",
    "message": lambda r, c: f"send a message to {_pick(r, CONTACTS)} saying {_pick(r, MESSAGES)}",
    "reminder": lambda r, c: f"remind me to {_pick(r, TASKS)} on {_date(r)}",
    "reminder_time": lambda r, c: f"remind me to {_pick(r, TASKS)} at {_time(r)}",
    "calendar": lambda r, c: f"add {_pick(r, EVENTS)} to my calendar for {_date(r)} at {_time(r)}",
    "drive_time": lambda r, c: f"how long does it take to drive to {_place(r, c)}",
    "navigate": lambda r, c: f"navigate to {_place(r, c, with_state=True)}",
    "distance": lambda r, c: f"how far is {_place(r, c)} from here",
    "local_time": lambda r, c: f"what time is it in {_place(r, c)}",
    "shopping": lambda r, c: (
        f"add {number_words(int(r.integers(2, 13)))} {_pick(r, SHOPPING_ITEMS)} to my shopping list"
    ),
    "units": lambda r, c: "how many {} are in a {}".format(*_pick(r, UNIT_PAIRS)),
    "math_plus": lambda r, c: (
        f"what is {number_words(int(r.integers(2, 500)))} plus {number_words(int(r.integers(2, 500)))}"
    ),
    "math_times": lambda r, c: (
        f"what is {number_words(int(r.integers(2, 20)))} times {number_words(int(r.integers(2, 20)))}"
    ),
    "sports": lambda r, c: f"what was the score of the {_pick(r, TEAMS)} game {_pick(r, DAYS[:2])}",
    "volume": lambda r, c: f"turn the volume up to {number_words(int(r.integers(1, 11)))}",
    "restaurant": lambda r, c: f"find a {_pick(r, FOODS)} place near {_place(r, c)}",
    "flight": lambda r, c: f"is my flight to {_place(r, c)} on time",
    "year": lambda r, c: (
        f"what happened in the year {number_words(19)} {number_words(int(r.integers(20, 100)))}"
    ),
}
TEMPLATE_NAMES = tuple(sorted(TEMPLATES))


# ----------------------------------------------------------------------------------------------------
# More requests for the training corpus (recipes/asr_baseline/local/corpus.py): new templates and entities on
# top of the demo's, so a recognizer trained on it meets a wider vocabulary than the demo's. The demo
# itself draws from TEMPLATES alone, so its shipped manifest is unchanged.

DISHES = (
    "pancakes", "lasagna", "banana bread", "chicken soup", "apple pie", "fried rice", "beef stew",
    "tomato sauce", "chocolate cake", "potato salad", "french toast", "meat loaf", "chili",
    "vegetable curry", "corn bread", "grilled cheese", "scrambled eggs", "lemon chicken",
)
NEWS_TOPICS = ("sports", "business", "world", "local", "weather", "science", "health", "political", "technology")
DEFINE_WORDS = (
    "happiness", "gravity", "democracy", "volcano", "oxygen", "algebra", "harvest", "symphony",
    "economy", "island", "glacier", "medicine", "kingdom", "language", "planet", "journey",
    "energy", "mystery", "freedom", "thunder", "desert", "harmony", "machine", "ocean",
)
PODCAST_WORDS = ("daily", "weekly", "morning", "science", "history", "money", "comedy", "garden", "kitchen", "travel")
PODCAST_NOUNS = ("hour", "show", "report", "club", "journal", "corner", "review", "hour", "minute", "talk")
GENRES = ("jazz", "country", "rock", "classical", "blues", "reggae", "gospel", "pop", "folk", "dance")
DOORS = ("front", "back", "garage", "side", "basement", "patio")
LANGUAGES = ("spanish", "french", "german", "italian", "japanese", "chinese", "russian", "portuguese", "polish")
PHRASES = (
    "good morning", "thank you", "where is the station", "how much does it cost", "nice to meet you",
    "i am hungry", "good night", "excuse me", "i love you", "see you tomorrow",
)
MOVIE_WORDS = ("dark", "last", "lost", "secret", "final", "golden", "silent", "frozen", "red", "hidden")
MOVIE_NOUNS = ("river", "kingdom", "island", "mission", "planet", "letter", "garden", "castle", "winter", "horizon")
THEATERS = ("regal", "grand", "plaza", "central", "royal", "majestic", "downtown", "park")
UTILITIES = ("electric", "water", "gas", "phone", "internet", "cable", "credit card")
WORKOUTS = ("run", "walk", "bike ride", "yoga session", "stretching routine", "swim", "strength workout")
ANIMALS = (
    "cat", "dog", "horse", "turtle", "parrot", "rabbit", "elephant", "goldfish", "hamster", "cow",
    "lion", "tiger", "bear", "whale", "dolphin", "eagle", "snake", "frog",
)
SMALL_TALK = (
    "tell me a joke", "what can you do", "how are you today", "sing me a song", "tell me a story",
    "what is your name", "good morning", "thank you very much", "flip a coin", "roll a dice",
    "what day is it today", "what is the date today", "stop the music", "pause the music",
    "skip this song", "play the next song", "go back to the last song", "what song is this",
    "turn it down", "never mind",
)


def _digits(rng, count: int) -> str:
    return " ".join(_ONES[int(d)] for d in rng.integers(0, 10, count))


def _two_words(rng, first, second):
    return f"{_pick(rng, first)} {_pick(rng, second)}"


EXTRA_TEMPLATES = {
    "recipe": lambda r, c: f"how do i make {_pick(r, DISHES)}",
    "recipe_time": lambda r, c: f"how long should i bake the {_pick(r, DISHES)}",
    "convert_temperature": lambda r, c: (
        f"what is {number_words(int(r.integers(0, 111)))} degrees fahrenheit in celsius"
    ),
    "define": lambda r, c: f"what does {_pick(r, DEFINE_WORDS)} mean",
    "spell": lambda r, c: f"how do you spell {_pick(r, DEFINE_WORDS)}",
    "news": lambda r, c: f"read me the {_pick(r, NEWS_TOPICS)} news",
    "traffic": lambda r, c: f"how is the traffic on the way to {_place(r, c)}",
    "sunset": lambda r, c: f"what time is {_pick(r, ('sunset', 'sunrise'))} in {_place(r, c)} {_pick(r, DAYS[:2])}",
    "podcast": lambda r, c: f"play the latest episode of the {_two_words(r, PODCAST_WORDS, PODCAST_NOUNS)}",
    "genre": lambda r, c: f"play some {_pick(r, GENRES)} music in the {_pick(r, ROOMS)}",
    "lock": lambda r, c: f"{_pick(r, ('lock', 'unlock'))} the {_pick(r, DOORS)} door",
    "lock_check": lambda r, c: f"is the {_pick(r, DOORS)} door locked",
    "translate": lambda r, c: f"how do you say {_pick(r, PHRASES)} in {_pick(r, LANGUAGES)}",
    "email": lambda r, c: f"read my new emails from {_pick(r, CONTACTS)}",
    "shopping_remove": lambda r, c: f"remove {_pick(r, SHOPPING_ITEMS)} from my shopping list",
    "movie": lambda r, c: (
        f"what time does the {_two_words(r, MOVIE_WORDS, MOVIE_NOUNS)} start at the {_pick(r, THEATERS)} theater"
    ),
    "population": lambda r, c: f"what is the population of {_place(r, c)}",
    "forecast": lambda r, c: (
        f"what is the forecast for {_place(r, c)} for the next {number_words(int(r.integers(2, 11)))} days"
    ),
    "timer_cancel": lambda r, c: f"cancel the {number_words(int(r.integers(2, 61)))} minute timer",
    "snooze": lambda r, c: f"snooze the alarm for {number_words(int(r.integers(2, 31)))} minutes",
    "call_number": lambda r, c: f"call {_digits(r, 3)} {_digits(r, 3)} {_digits(r, 4)}",
    "pay_bill": lambda r, c: (
        f"pay the {_pick(r, UTILITIES)} bill of {number_words(int(r.integers(10, 500)))} dollars"
    ),
    "tip": lambda r, c: (
        f"what is a {number_words(int(r.integers(10, 26)))} percent tip on "
        f"{number_words(int(r.integers(5, 300)))} dollars"
    ),
    "hotel": lambda r, c: f"book a hotel in {_place(r, c)} for {number_words(int(r.integers(2, 15)))} nights",
    "workout": lambda r, c: f"start a {number_words(int(r.integers(5, 91)))} minute {_pick(r, WORKOUTS)}",
    "animal": lambda r, c: f"how long does a {_pick(r, ANIMALS)} live",
    "capital": lambda r, c: f"what is the capital of {c.state_name}",
    "small_talk": lambda r, c: _pick(r, SMALL_TALK),
}
TRAINING_TEMPLATES = {**TEMPLATES, **EXTRA_TEMPLATES}


@dataclass(frozen=True)
class Sentence:
    index: int
    template: str
    text: str


def make_sentence(seed: int, index: int, pick_city: CityPicker, templates: dict | None = None) -> Sentence:
    """Sentence ``index`` for ``seed``: a template, then its slots, all from one per-index Generator.

    ``templates`` defaults to the demo's TEMPLATES (TRAINING_TEMPLATES for the training corpus)."""
    templates = TEMPLATES if templates is None else templates
    rng = np.random.default_rng(np.random.SeedSequence([seed, SENTENCE_STREAM, index]))
    template = _pick(rng, tuple(sorted(templates)))
    city = pick_city(rng)
    text = _normalize(templates[template](rng, city))
    return Sentence(index=index, template=template, text=text)


def sentence_pool(seed: int, n_sentences: int, cities: tuple[City, ...], templates: dict | None = None) -> list[Sentence]:
    """``n_sentences`` distinct sentences: indices are tried in order, repeats of an earlier text skipped.

    Returned ``index`` values are the pool positions 0..n-1 (the draw index is only an implementation
    detail of skipping duplicates).
    """
    pick_city = CityPicker(cities)
    pool: list[Sentence] = []
    seen: set[str] = set()
    draw = 0
    while len(pool) < n_sentences:
        sentence = make_sentence(seed, draw, pick_city, templates)
        draw += 1
        if sentence.text in seen:
            continue
        seen.add(sentence.text)
        pool.append(Sentence(index=len(pool), template=sentence.template, text=sentence.text))
        if draw > 50 * n_sentences:
            raise RuntimeError(f"could not draw {n_sentences} distinct sentences")
    return pool


def assign_sentences(seed: int, n_utterances: int, pool: list[Sentence]) -> list[Sentence]:
    """Sentence for each utterance slot: the pool in one seeded order, cycled, so every sentence is read
    before any is read twice (and by speakers of different voices, since speakers are in seeded order)."""
    order = np.random.default_rng([seed, ORDER_STREAM]).permutation(len(pool))
    return [pool[order[k % len(pool)]] for k in range(n_utterances)]


class CityPicker:
    """Draws a city with probability proportional to its zip count (big cities come up more often)."""

    def __init__(self, cities: tuple[City, ...]):
        self.cities = cities
        self._cumulative = np.cumsum([c.weight for c in cities], dtype=float)

    def __call__(self, rng: np.random.Generator) -> City:
        u = rng.random() * self._cumulative[-1]
        return self.cities[int(np.searchsorted(self._cumulative, u, side="right"))]


_SPACES = re.compile(r"\s+")


def _normalize(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip()


# ----------------------------------------------------------------------------------------------------
# The recognizer's vocabulary, and the city list filtered by it.


def template_vocabulary(templates: dict | None = None) -> set[str]:
    """Every word the templates and entity lists can produce, cities and states excluded."""
    templates = TEMPLATES if templates is None else templates
    words: set[str] = set(_ONES) | set(t for t in _TENS if t != "_")
    words |= {"hundred", "thousand", "oh"}
    words |= {ordinal_words(n).split()[-1] for n in range(1, 32)}
    for group in (ARTIST_ADJECTIVES, ARTIST_NOUNS, SONG_TITLES, PLAYLISTS, DEVICE_BRANDS, DEVICES,
                  ROOMS, CONTACTS, TASKS, EVENTS, SHOPPING_ITEMS, FOODS, TEAMS, DAYS, MONTHS,
                  PARTS_OF_DAY, MESSAGES) + ((DISHES, NEWS_TOPICS, DEFINE_WORDS, PODCAST_WORDS, PODCAST_NOUNS,
                  GENRES, DOORS, LANGUAGES, PHRASES, MOVIE_WORDS, MOVIE_NOUNS, THEATERS, UTILITIES, WORKOUTS,
                  ANIMALS, SMALL_TALK, ("sunset", "sunrise", "lock", "unlock"))
                  if any(name in EXTRA_TEMPLATES for name in templates) else ()):
        for phrase in group:
            words |= set(phrase.split())
    for pair in UNIT_PAIRS:
        words |= set(pair)
    for name in sorted(templates):
        words |= _template_literal_words(templates[name])
    return words


def _template_literal_words(template) -> set[str]:
    """The fixed words of one template, found by filling it with a fixed Generator and a dummy city."""
    rng = np.random.default_rng(0)
    text = template(rng, City("boston", "MA", 1))
    return set(text.split())


@lru_cache(maxsize=1)
def _pocketsphinx_lexicon():
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the demo corpus needs the 'pocketsphinx' package (pip install 'fairspeech[speech]'): "
            "its en-us dictionary and language model decide which words a reference may contain"
        ) from exc
    decoder = Decoder(loglevel="FATAL")
    return decoder, decoder.get_lm()


# pocketsphinx scores a word missing from its language model with this log-probability.
_LM_UNKNOWN = -536870912


def recognizer_vocabulary(words) -> set[str]:
    """The subset of ``words`` pocketsphinx's en-us model can output (in its dictionary and its LM)."""
    decoder, lm = _pocketsphinx_lexicon()
    return {w for w in words if decoder.lookup_word(w) is not None and lm.prob([w]) != _LM_UNKNOWN}


def speakable_cities(zip_table) -> tuple[City, ...]:
    """Cities of the 50 states + DC whose every word the recognizer can output, weighted by zip count.

    ``zip_table`` is the active standard zip table from :mod:`fairspeech.demo.speakers`.
    """
    names = zip_table.loc[zip_table["state"].isin(STATE_NAMES.keys()), ["city", "state"]]
    counts = names.groupby(["city", "state"]).size()
    spoken = {city: city.lower() for city, _ in counts.index}
    plain = {city: s for city, s in spoken.items() if re.fullmatch(r"[a-z]+( [a-z]+)*", s)}
    known = recognizer_vocabulary({w for s in plain.values() for w in s.split()})
    cities = [
        City(name=plain[city], state=state, weight=int(n))
        for (city, state), n in counts.items()
        if city in plain and all(w in known for w in plain[city].split())
    ]
    return tuple(sorted(cities, key=lambda c: (c.state, c.name)))
