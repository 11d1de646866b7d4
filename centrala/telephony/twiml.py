"""TwiML answers for the call flow: greeting and ``<Dial>``, voicemail, a one-key menu, a closing message.

Built with the twilio library's ``VoiceResponse``, which escapes text and attributes as XML. Every input is
validated first -- URLs absolute http(s), numbers E.164, client identities and menu keys from small alphabets,
texts free of control characters -- so a bad value is an ``InvalidInputError`` here, not broken TwiML (Twilio
error 12100) on a live call.

Speech uses Twilio's Google voices, which cover all four languages (Polly has no Ukrainian voice), with the
matching ``language`` (https://www.twilio.com/docs/voice/twiml/say/text-speech).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from centrala.core.errors import InvalidInputError


@dataclass(frozen=True)
class Speech:
    """How ``<Say>`` speaks one of our languages."""

    language: str
    voice: str


# Keys: our language codes (as used by the portal and contacts), plus en-GB for a British voice.
SPEECH: dict[str, Speech] = {
    "en": Speech(language="en-US", voice="Google.en-US-Standard-C"),
    "en-GB": Speech(language="en-GB", voice="Google.en-GB-Standard-A"),
    "cs": Speech(language="cs-CZ", voice="Google.cs-CZ-Standard-A"),
    "pl": Speech(language="pl-PL", voice="Google.pl-PL-Standard-A"),
    "uk": Speech(language="uk-UA", voice="Google.uk-UA-Standard-A"),
}

# Default texts, per language; the greeting, voicemail and menu prompts can all be overridden per number.
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello, and thank you for calling. We are connecting you to one of our agents, please hold.",
        "voicemail": (
            "Sorry, nobody can take your call right now. Please leave a message after the tone, "
            "and we will call you back."
        ),
        "closed": (
            "Thank you for calling. We are closed at the moment. Please leave a message after the tone, "
            "and we will call you back on the next business day."
        ),
        "menu": "Please choose one of the following options.",
        "option": "{label}: press {key}.",
        "star": "star",
        "hash": "hash",
        "goodbye": "Thank you. Goodbye.",
    },
    "cs": {
        "greeting": "Dobrý den, děkujeme, že voláte. Spojuji vás s operátorem, vydržte prosím.",
        "voicemail": (
            "Omlouváme se, momentálně nikdo nemůže váš hovor přijmout. Zanechte nám prosím vzkaz po zaznění "
            "tónu a my vám zavoláme zpět."
        ),
        "closed": (
            "Děkujeme, že voláte. Momentálně máme zavřeno. Zanechte nám prosím vzkaz po zaznění tónu "
            "a ozveme se vám příští pracovní den."
        ),
        "menu": "Vyberte si prosím z následujících možností.",
        "option": "{label}: stiskněte {key}.",
        "star": "hvězdičku",
        "hash": "mřížku",
        "goodbye": "Děkujeme. Na shledanou.",
    },
    "pl": {
        "greeting": "Dzień dobry, dziękujemy za telefon. Łączymy z konsultantem, prosimy czekać.",
        "voicemail": (
            "Przepraszamy, w tej chwili nikt nie może odebrać połączenia. Prosimy zostawić wiadomość "
            "po sygnale, a oddzwonimy."
        ),
        "closed": (
            "Dziękujemy za telefon. Obecnie jesteśmy nieczynni. Prosimy zostawić wiadomość po sygnale, "
            "a oddzwonimy w następnym dniu roboczym."
        ),
        "menu": "Prosimy wybrać jedną z poniższych opcji.",
        "option": "{label}: naciśnij {key}.",
        "star": "gwiazdkę",
        "hash": "krzyżyk",
        "goodbye": "Dziękujemy. Do widzenia.",
    },
    "uk": {
        "greeting": "Добрий день, дякуємо за дзвінок. З’єднуємо вас з оператором, будь ласка, зачекайте.",
        "voicemail": (
            "На жаль, зараз ніхто не може відповісти на ваш дзвінок. Будь ласка, залиште повідомлення "
            "після сигналу, і ми вам передзвонимо."
        ),
        "closed": (
            "Дякуємо за дзвінок. Зараз ми не працюємо. Будь ласка, залиште повідомлення після сигналу, "
            "і ми передзвонимо вам наступного робочого дня."
        ),
        "menu": "Будь ласка, оберіть один із таких варіантів.",
        "option": "{label}: натисніть {key}.",
        "star": "зірочку",
        "hash": "решітку",
        "goodbye": "Дякуємо. До побачення.",
    },
}

# Twilio limits (https://www.twilio.com/docs/voice/twiml/dial, /record, /gather, /say).
DIAL_TIMEOUT_RANGE = (5, 600)
RECORD_MAX_LENGTH_RANGE = (1, 3_600)
GATHER_TIMEOUT_RANGE = (1, 60)
MAX_SAY_CHARACTERS = 4_096
# Twilio transcribes <Record> messages in English only, and only those of up to two minutes
# (https://www.twilio.com/docs/voice/twiml/record#attributes-transcribe).
TRANSCRIPTION_LANGUAGES = frozenset({"en", "en-GB"})
TRANSCRIPTION_MAX_SECONDS = 120

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_CLIENT_IDENTITY = re.compile(r"[A-Za-z0-9_.-]{1,121}")
_MENU_KEY = re.compile(r"[0-9*#]")


def default_text(key: str, language: str) -> str:
    """Our default text ``key`` (greeting, voicemail, closed, menu, goodbye) in ``language``.

    Raises:
        InvalidInputError: an unknown language or key.
    """
    texts = TEXTS.get(_base_language(language))
    if texts is None or key not in texts:
        raise InvalidInputError(f"no default text {key!r} in language {language!r}")
    return texts[key]


def greeting_and_dial(
    *,
    language: str,
    clients: Sequence[str],
    phone_numbers: Sequence[str],
    timeout_seconds: int,
    action_url: str,
    greeting_text: str | None = None,
    caller_id: str | None = None,
    leg_status_callback: str | None = None,
) -> str:
    """Greet the caller, then ring the agents' browser clients and phones at once for ``timeout_seconds``.

    When the dialled legs end (answered and finished, or nobody answered), Twilio requests ``action_url``
    with ``DialCallStatus``; its answer continues the call (e.g. with ``voicemail``). With
    ``leg_status_callback`` each leg reports its own progress, which names the agent who answered.

    Raises:
        InvalidInputError: nobody to dial, or an invalid identity, number, timeout, URL or text.
    """
    speech = _speech(language)
    if not clients and not phone_numbers:
        raise InvalidInputError("nobody to dial: answer with voicemail() when no agent is available")
    timeout = _check_range("timeout_seconds", timeout_seconds, DIAL_TIMEOUT_RANGE)
    action = _check_url("action_url", action_url)
    leg_callback = _check_url("leg_status_callback", leg_status_callback) if leg_status_callback else None
    if caller_id is not None and not _E164.fullmatch(caller_id):
        raise InvalidInputError("caller_id must be an E.164 number")
    leg_options = (
        {
            "status_callback": leg_callback,
            "status_callback_event": "initiated ringing answered completed",
            "status_callback_method": "POST",
        }
        if leg_callback
        else {}
    )
    response = VoiceResponse()
    _say(response, greeting_text, "greeting", speech, language)
    dial = Dial(action=action, method="POST", timeout=timeout, caller_id=caller_id)
    for identity in clients:
        if not _CLIENT_IDENTITY.fullmatch(identity):
            raise InvalidInputError(f"{identity!r} is not a client identity (1-121 of A-Z a-z 0-9 _ . -)")
        dial.client(identity=identity, **leg_options)
    for number in phone_numbers:
        if not _E164.fullmatch(number):
            raise InvalidInputError(f"{number!r} is not an E.164 phone number")
        dial.number(number, **leg_options)
    response.append(dial)
    return str(response)


def voicemail(
    *,
    language: str,
    max_length_seconds: int,
    recording_status_callback: str,
    action_url: str,
    prompt: str | None = None,
    transcribe_callback: str | None = None,
) -> str:
    """Ask for a message and record it after a beep; ``#`` or silence ends it.

    ``recording_status_callback`` hears of the recording (in progress, completed, or absent when only silence
    was recorded); ``action_url`` is requested when recording ends and answers what follows. Transcription is
    asked for only where Twilio offers it: English messages of at most two minutes.

    Raises:
        InvalidInputError: an invalid length, URL or text.
    """
    speech = _speech(language)
    max_length = _check_range("max_length_seconds", max_length_seconds, RECORD_MAX_LENGTH_RANGE)
    status_callback = _check_url("recording_status_callback", recording_status_callback)
    action = _check_url("action_url", action_url)
    transcribe_url = _check_url("transcribe_callback", transcribe_callback) if transcribe_callback else None
    if language not in TRANSCRIPTION_LANGUAGES or max_length > TRANSCRIPTION_MAX_SECONDS:
        transcribe_url = None
    response = VoiceResponse()
    _say(response, prompt, "voicemail", speech, language)
    response.record(
        action=action,
        method="POST",
        max_length=max_length,
        timeout=5,
        finish_on_key="#",
        play_beep=True,
        trim="trim-silence",
        recording_status_callback=status_callback,
        recording_status_callback_method="POST",
        recording_status_callback_event="in-progress completed absent",
        transcribe=True if transcribe_url else None,
        transcribe_callback=transcribe_url,
    )
    # Reached only when nothing was recorded: Twilio then goes on to the next verb instead of the action URL.
    _say(response, None, "goodbye", speech, language)
    response.hangup()
    return str(response)


def ivr_menu(
    *,
    language: str,
    options: Mapping[str, str],
    action_url: str,
    timeout: int = 5,
    prompt: str | None = None,
) -> str:
    """A one-key menu: read the options, collect one key and post it as ``Digits`` to ``action_url``.

    ``options`` maps a key (``0``-``9``, ``*``, ``#``) to a label read out as "label: press key". Without a
    key pressed within ``timeout`` seconds the call is redirected to ``action_url`` without ``Digits``.

    Raises:
        InvalidInputError: no options, a bad key, label, timeout, URL or text.
    """
    speech = _speech(language)
    if not options:
        raise InvalidInputError("a menu needs at least one option")
    action = _check_url("action_url", action_url)
    wait = _check_range("timeout", timeout, GATHER_TIMEOUT_RANGE)
    texts = TEXTS[_base_language(language)]
    lines = [_check_text("prompt", prompt) if prompt is not None else texts["menu"]]
    for key, label in options.items():
        if not _MENU_KEY.fullmatch(key):
            raise InvalidInputError(f"menu key {key!r} is not one of 0-9, * or #")
        spoken_key = texts["star"] if key == "*" else texts["hash"] if key == "#" else key
        lines.append(texts["option"].format(label=_check_text("label", label), key=spoken_key))
    response = VoiceResponse()
    gather = Gather(input="dtmf", num_digits=1, action=action, method="POST", timeout=wait)
    gather.say(_check_text("menu", " ".join(lines)), voice=speech.voice, language=speech.language)
    response.append(gather)
    response.redirect(action, method="POST")
    return str(response)


def say_and_hangup(*, language: str, text: str | None = None) -> str:
    """Say ``text`` (by default our goodbye) and end the call.

    Raises:
        InvalidInputError: an unknown language or an invalid text.
    """
    speech = _speech(language)
    response = VoiceResponse()
    _say(response, text, "goodbye", speech, language)
    response.hangup()
    return str(response)


# --- helpers --------------------------------------------------------------------------------------------------


def _base_language(language: str) -> str:
    return "en" if language == "en-GB" else language


def _speech(language: str) -> Speech:
    speech = SPEECH.get(language)
    if speech is None:
        raise InvalidInputError(f"no voice for language {language!r}; one of {', '.join(SPEECH)}")
    return speech


def _say(response: VoiceResponse, text: str | None, default_key: str, speech: Speech, language: str) -> None:
    spoken = _check_text(default_key, text) if text is not None else default_text(default_key, language)
    response.say(spoken, voice=speech.voice, language=speech.language)


def _check_text(name: str, text: str) -> str:
    value = text.strip()
    if not value:
        raise InvalidInputError(f"the {name} text is empty")
    if len(value) > MAX_SAY_CHARACTERS:
        raise InvalidInputError(f"the {name} text is longer than Twilio's {MAX_SAY_CHARACTERS} characters")
    # XML 1.0 cannot carry most control characters at all; escaping does not help.
    if any(not char.isprintable() and char not in "\t\n\r " for char in value):
        raise InvalidInputError(f"the {name} text contains control characters")
    return value


def _check_url(name: str, url: str | None) -> str:
    if not url:
        raise InvalidInputError(f"{name} is missing")
    parts = urlsplit(url)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or any(char.isspace() or not char.isprintable() for char in url)
    ):
        raise InvalidInputError(f"{name} must be an absolute http(s) URL")
    return url


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{name} must be a whole number from {low} to {high}")
    return value
