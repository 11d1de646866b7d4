"""A seeded corpus of realistic multilingual support e-mails (cs/pl/uk/en) in SMTP wire format.

Every mail is assembled byte by byte rather than with ``EmailMessage``, because the stdlib generator
re-encodes RFC 2047 words as UTF-8 and the point of the corpus is the legacy charsets real mail clients
still send: ISO-8859-2 and windows-1250 for Czech and Polish, KOI8-U and windows-1251 for Ukrainian. Bodies
are quoted-printable, base64, 8bit or (plain ASCII) 7bit; lines end in CRLF (RFC 5322 §2.1) and stay far below
998 octets, so every mail passes SMTP unchanged and parses with ``email.policy.default`` without defects.
"""

from __future__ import annotations

import base64
import html
import quopri
import random
import textwrap
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.utils import format_datetime, formataddr

CRLF = "\r\n"
SENDER_COUNT = 100
REPLY_SHARE = 0.30
ALTERNATIVE_SHARE = 0.40
ATTACHMENT_SHARE = 0.20
# Quoted history is cut here, as clients do with long threads, so reply chains do not grow without bound.
MAX_QUOTED_CHARS = 16000
# Share of first mails that paste an order summary (a table in HTML, aligned columns in text).
ORDER_SHARE = 0.6
START = datetime(2024, 3, 4, 7, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Language:
    """Everything a mail in one language is written from."""

    code: str
    charsets: tuple[tuple[str, float], ...]
    offset_hours: int
    greetings: tuple[str, ...]
    closings: tuple[str, ...]
    topics: tuple[tuple[str, str], ...]  # (subject, opening paragraph)
    details: tuple[str, ...]
    followups: tuple[str, ...]
    disclaimer: str
    attribution: str  # format with {date}, {name}, {address}
    date_format: str
    male_first: tuple[str, ...]
    female_first: tuple[str, ...]
    surnames: tuple[tuple[str, str], ...]  # (male form, female form)
    personal_domains: tuple[str, ...]
    companies: tuple[tuple[str, str], ...]  # (company name, domain)
    phone_format: str
    filenames: tuple[str, ...]
    order_title: str  # format with {number} and {date}
    order_total: str
    currency: str
    items: tuple[tuple[str, int], ...]  # (product, price in whole currency units)
    utf8_only_details: tuple[str, ...] = ()


CS = Language(
    code="cs",
    charsets=(("utf-8", 0.5), ("iso-8859-2", 0.25), ("windows-1250", 0.25)),
    offset_hours=1,
    greetings=("Dobrý den,", "Vážení,", "Vážená zákaznická podporo,", "Dobrý den, vážení přátelé,"),
    closings=("S pozdravem", "Děkuji a přeji hezký den", "S přátelským pozdravem", "Děkuji za vyřízení"),
    topics=(
        (
            "Chybná částka na faktuře 2024-0117",
            (
                "obracím se na vás ohledně faktury č. 2024-0117, kterou jsme obdrželi minulý týden. Na "
                "faktuře je uvedena částka za dvanáct měsíců předplatného, ačkoliv jsme si v lednu "
                "objednávali pouze čtvrtletní variantu. Prosím o kontrolu a případně o vystavení opravného "
                "daňového dokladu, abychom mohli fakturu zaúčtovat ještě v tomto měsíci. Naše účetní "
                "potřebuje mít doklady uzavřené do patnáctého."
            ),
        ),
        (
            "Nedoručená zásilka - objednávka 58812",
            (
                "objednávku jsme zaplatili už dvanáctého března a podle potvrzení měla být doručena do pěti "
                "pracovních dnů. Zásilka ale dodnes nedorazila a sledování u přepravce ukazuje už týden "
                "pořád stejný stav: předáno k přepravě. Na zákaznické lince jsem čekal přes dvacet minut, "
                "než se hovor přerušil. Můžete mi prosím sdělit, kde se balík nachází a kdy s ním mohu "
                "počítat? Pokud to nepůjde vyřešit do konce týdne, raději bych objednávku zrušil a požádal o "
                "vrácení peněz."
            ),
        ),
        (
            "Reklamace routeru",
            (
                "zakoupený router přestal po třech týdnech fungovat. Po zapnutí bliká oranžová kontrolka a "
                "zařízení se nepřipojí k síti, ani když ho resetuji do továrního nastavení podle návodu. "
                "Vyzkoušel jsem jiný napájecí zdroj i jiný kabel, bez výsledku. Chtěl bych proto uplatnit "
                "reklamaci v rámci záruky. Účtenku i fotografii štítku s výrobním číslem přikládám. Napište "
                "mi prosím, zda mám zařízení poslat poštou, nebo ho mohu přinést osobně na vaši pobočku v "
                "Brně."
            ),
        ),
        (
            "Nelze se přihlásit do účtu",
            (
                "od včerejšího odpoledne se nemohu přihlásit do zákaznického účtu. Po zadání hesla se "
                "stránka znovu načte a zobrazí se hláška, že relace vypršela. Zkoušela jsem to v různých "
                "prohlížečích i z mobilního telefonu, vždy se stejným výsledkem. Obnovení hesla přes e-mail "
                "proběhlo v pořádku, ale ani s novým heslem se dovnitř nedostanu. Potřebuji si stáhnout "
                "vyúčtování za únor, proto vás prosím o co nejrychlejší pomoc."
            ),
        ),
        (
            "Změna sídla společnosti",
            (
                "rádi bychom vás informovali o změně sídla naší společnosti. Od prvního dubna sídlíme na "
                "adrese Květná 1247/18, 603 00 Brno-střed. Prosíme o úpravu údajů ve smlouvě i na všech "
                "budoucích fakturách. Kontaktní osoba a bankovní spojení zůstávají beze změny. Pokud je ke "
                "změně potřeba podepsat dodatek ke smlouvě, pošlete nám ho prosím elektronicky, podepíšeme "
                "ho obratem."
            ),
        ),
        (
            "Výpadek připojení dne 14. 3.",
            (
                "dnes ráno mezi sedmou a desátou hodinou nefungovalo připojení k internetu v celé naší "
                "kanceláři. Technik, se kterým jsem mluvila po telefonu, slíbil, že se mi ozve zpět, ale "
                "zatím se nikdo neozval. Výpadek nám způsobil značné komplikace, protože jsme nemohli "
                "vyřizovat objednávky zákazníků. Prosím o vysvětlení příčiny a o informaci, jak zajistíte, "
                "aby se situace neopakovala. Zároveň žádám o poměrnou slevu z měsíčního paušálu."
            ),
        ),
        (
            "Vrácení peněz za vrácené zboží",
            (
                "zboží jsem v zákonné lhůtě čtrnácti dnů vrátil zpět, zásilka byla podle potvrzení přepravce "
                "doručena na váš sklad devátého. Od té doby uplynuly více než tři týdny a peníze mi stále "
                "nebyly vráceny. Číslo účtu jsem uvedl ve formuláři pro odstoupení od smlouvy. Prosím o "
                "kontrolu, zda u vás vrácení někde neuvízlo, a o potvrzení termínu, kdy mi částka dorazí na "
                "účet."
            ),
        ),
        (
            "Žádost o zpětné zavolání",
            (
                "mohl by mi prosím zavolat někdo z technického oddělení? Potřebuji probrat nastavení nové "
                "pobočkové ústředny a po e-mailu je to dost složité vysvětlovat. Nejlépe se mi hodí "
                "dopoledne mezi devátou a dvanáctou, případně ve čtvrtek celý den. Moje telefonní číslo je v "
                "podpisu. Děkuji předem za ochotu."
            ),
        ),
        (
            "Převod smlouvy na jiného člena rodiny",
            (
                "chtěla bych se zeptat, jestli je možné převést službu na jiného člena rodiny. Maminka se "
                "stěhuje k nám a svou smlouvu by ráda zrušila, ale zachovala si telefonní číslo, na které "
                "jsou zvyklí všichni její známí. Jaký je postup a jaké dokumenty budeme potřebovat? Je nutné "
                "přijít osobně, nebo to lze vyřídit online?"
            ),
        ),
        (
            "Dotaz k vyúčtování za únor",
            (
                "ve vyúčtování za únor jsou dvě položky, kterým nerozumím: poplatek za změnu tarifu a "
                "jednorázová platba za dopravu. Tarif jsme neměnili a žádné zboží jsme v únoru "
                "neobjednávali. Mohli byste mi prosím vysvětlit, za co přesně tyto částky jsou? Pokud jde o "
                "chybu, prosím o jejich odečtení z příští faktury."
            ),
        ),
    ),
    details=(
        (
            "Pro úplnost doplňuji, že jsme vaším zákazníkem už od roku 2016 a podobný problém jsme dosud "
            "neměli. Zákaznické číslo je 48213, smlouva je vedená na firmu, nikoliv na mě osobně. Pokud "
            "budete potřebovat další podklady, například výpis z obchodního rejstříku nebo plnou moc, rád je "
            "doložím."
        ),
        (
            "Situace je pro nás nepříjemná hlavně proto, že se blíží konec čtvrtletí a potřebujeme mít vše v "
            "pořádku před uzávěrkou. Budu rád, když mi dáte vědět alespoň krátce, že se věcí někdo zabývá, i "
            "kdyby konečné řešení mělo chvíli trvat."
        ),
        (
            "Už jsem se pokoušel věc vyřešit přes formulář na vašem webu, ale po odeslání se zobrazila chyba "
            "a nevím, jestli vám požadavek vůbec dorazil. Proto píšu raději přímo na tuto adresu. Případně "
            "mi prosím napište, kam se mám s podobnými dotazy obracet příště."
        ),
        (
            "Doma máme dvě děti, které internet potřebují do školy, a já sám pracuji tři dny v týdnu z "
            "domova. Každý výpadek nás proto opravdu omezuje. Oceníme, pokud se na věc podíváte přednostně."
        ),
        (
            "Na zákaznickou linku jsem volala třikrát, pokaždé mi někdo slíbil, že se mi ozve, a pokaždé se "
            "nic nestalo. Věřím, že to byla jen souhra náhod, ale ráda bych tentokrát dostala odpověď "
            "písemně, abych měla vše zdokumentované."
        ),
        (
            "Přikládám také čísla předchozích požadavků, pokud by vám pomohla dohledat historii: "
            "2023-11-0451 a 2024-01-0087. V obou případech šlo o podobný problém, který se tehdy podařilo "
            "vyřešit restartem zařízení na vaší straně."
        ),
        (
            "Kdyby bylo potřeba, mohu se zastavit osobně na pobočce. Nejbližší máme v Olomouci na Horním "
            "náměstí, tam to mám z práce kousek. Jen mi prosím napište, co všechno si mám s sebou vzít."
        ),
    ),
    followups=(
        (
            "dovoluji si připomenout svůj předchozí e-mail, na který jsem zatím nedostal žádnou odpověď. "
            "Situace se mezitím nezměnila a věc je pro nás poměrně naléhavá."
        ),
        (
            "posílám ještě doplňující informace. Dnes ráno se problém objevil znovu, tentokrát kolem osmé "
            "hodiny. Přikládám snímek obrazovky s chybovou hláškou."
        ),
        (
            "děkuji za rychlou reakci. Bohužel navržené řešení nepomohlo, postupoval jsem přesně podle "
            "vašich instrukcí. Můžete se na to prosím podívat ještě jednou?"
        ),
        (
            "jen se chci zeptat, jestli je v mé věci něco nového. Už je to přes týden a od vás jsem zatím "
            "dostala jen automatické potvrzení přijetí."
        ),
    ),
    disclaimer=(
        "Tato zpráva a veškeré přílohy jsou důvěrné a jsou určeny výhradně adresátovi. Pokud nejste "
        "zamýšleným příjemcem, informujte prosím neprodleně odesílatele a zprávu včetně příloh odstraňte. "
        "Jakékoliv šíření, kopírování nebo jiné použití obsahu této zprávy je zakázáno. Odesílatel "
        "neodpovídá za škody způsobené přenosem počítačových virů ani za změny obsahu vzniklé při přenosu. "
        "Obsah této zprávy nezakládá žádný závazek společnosti, pokud to není výslovně uvedeno."
    ),
    attribution="Dne {date} {name} napsal(a):",
    date_format="{d}. {m}. {y} v {H}:{M:02d}",
    male_first=("Jiří", "Jan", "Petr", "Tomáš", "Martin", "Lukáš", "Ondřej", "Zdeněk", "Vojtěch", "Miroslav"),
    female_first=("Jana", "Marie", "Eva", "Hana", "Lucie", "Kateřina", "Tereza", "Věra", "Zuzana", "Markéta"),
    surnames=(
        ("Novák", "Nováková"),
        ("Dvořák", "Dvořáková"),
        ("Černý", "Černá"),
        ("Procházka", "Procházková"),
        ("Kučera", "Kučerová"),
        ("Veselý", "Veselá"),
        ("Horák", "Horáková"),
        ("Němec", "Němcová"),
        ("Pokorný", "Pokorná"),
        ("Růžička", "Růžičková"),
        ("Šťastný", "Šťastná"),
        ("Kříž", "Křížová"),
    ),
    personal_domains=("seznam.cz.example", "email.cz.example", "centrum.cz.example", "post.cz.example"),
    companies=(
        ("Stavby Brno s.r.o.", "stavby-brno.cz.example"),
        ("Zahradnictví Růžička a syn", "zahradnictvi-ruzicka.cz.example"),
        ("Účetní kancelář Nová Ves", "ucetni-novaves.cz.example"),
        ("Pekárna U Mlýna, a.s.", "pekarna-umlyna.cz.example"),
    ),
    phone_format="+420 {a:03d} {b:03d} {c:03d}",
    order_title="Souhrn objednávky č. {number} ze dne {date}:",
    order_total="Celkem k úhradě vč. DPH",
    currency="Kč",
    items=(
        ("Router Wi-Fi 6 AX3000", 2490),
        ("Kabel UTP Cat6, 5 m", 129),
        ("Prodlužovací přívod 3 m", 249),
        ("Bezdrátová myš", 399),
        ("Klávesnice s českým rozložením", 690),
        ("Powerbanka 20 000 mAh", 899),
        ("Doprava - výdejní místo", 79),
        ("Stolní lampa LED", 549),
        ("Úložný box na kabely", 189),
        ("Sluchátka s mikrofonem", 1290),
        ("Čistič obrazovky 200 ml", 119),
        ("Síťový přepínač 8 portů", 759),
        ("Záruka prodloužená o 2 roky", 499),
        ("Držák na monitor", 1149),
    ),
    filenames=("faktura_2024-0117.pdf", "snímek obrazovky.png", "reklamační protokol.pdf", "štítek.png"),
)

PL = Language(
    code="pl",
    charsets=(("utf-8", 0.5), ("iso-8859-2", 0.25), ("windows-1250", 0.25)),
    offset_hours=1,
    greetings=("Dzień dobry,", "Szanowni Państwo,", "Witam,", "Szanowna Pani, Szanowny Panie,"),
    closings=("Z poważaniem", "Pozdrawiam serdecznie", "Z wyrazami szacunku", "Łączę pozdrowienia"),
    topics=(
        (
            "Błędna kwota na fakturze FV/2024/03/117",
            (
                "piszę w sprawie faktury nr FV/2024/03/117, którą otrzymaliśmy w zeszłym tygodniu. Na "
                "fakturze widnieje kwota za roczną subskrypcję, chociaż w styczniu zamawialiśmy wyłącznie "
                "pakiet kwartalny. Proszę o sprawdzenie i ewentualne wystawienie faktury korygującej, abyśmy "
                "mogli zaksięgować dokument jeszcze w tym miesiącu. Nasza księgowa zamyka okres "
                "rozliczeniowy piętnastego."
            ),
        ),
        (
            "Niedostarczona przesyłka - zamówienie 58812",
            (
                "zamówienie zostało opłacone dwunastego marca i według potwierdzenia miało zostać "
                "dostarczone w ciągu pięciu dni roboczych. Paczka jednak do dziś nie dotarła, a śledzenie "
                "przesyłki u przewoźnika od tygodnia pokazuje ten sam status: przekazano do doręczenia. Na "
                "infolinii czekałem ponad dwadzieścia minut, po czym połączenie zostało przerwane. Czy mogą "
                "Państwo sprawdzić, gdzie znajduje się przesyłka i kiedy mogę się jej spodziewać? Jeżeli "
                "sprawa nie zostanie rozwiązana do końca tygodnia, wolałbym anulować zamówienie i otrzymać "
                "zwrot pieniędzy."
            ),
        ),
        (
            "Reklamacja odkurzacza",
            (
                "zakupiony odkurzacz przestał działać po trzech tygodniach użytkowania. Po włączeniu silnik "
                "pracuje przez kilka sekund, a następnie urządzenie samo się wyłącza i miga czerwona dioda. "
                "Sprawdziłem filtr oraz pojemnik na kurz, wszystko jest czyste. W związku z tym chciałbym "
                "złożyć reklamację w ramach gwarancji. W załączniku przesyłam paragon oraz zdjęcie tabliczki "
                "znamionowej z numerem seryjnym. Proszę o informację, czy mam odesłać sprzęt kurierem, czy "
                "mogę dostarczyć go osobiście do punktu serwisowego w Krakowie."
            ),
        ),
        (
            "Nie mogę zalogować się do konta",
            (
                "od wczoraj po południu nie mogę zalogować się do panelu klienta. Po wpisaniu hasła strona "
                "przeładowuje się i pojawia się komunikat, że sesja wygasła. Próbowałam w kilku "
                "przeglądarkach oraz na telefonie, zawsze z tym samym skutkiem. Reset hasła przez e-mail "
                "przebiegł poprawnie, ale nawet z nowym hasłem nie udaje mi się wejść na konto. Muszę pobrać "
                "rozliczenie za luty, dlatego bardzo proszę o szybką pomoc."
            ),
        ),
        (
            "Zmiana adresu siedziby firmy",
            (
                "uprzejmie informujemy o zmianie adresu siedziby naszej firmy. Od pierwszego kwietnia "
                "mieścimy się przy ulicy Źródlanej 14/3, 31-512 Kraków. Prosimy o aktualizację danych w "
                "umowie oraz na wszystkich przyszłych fakturach. Osoba kontaktowa i numer rachunku bankowego "
                "pozostają bez zmian. Jeśli zmiana wymaga podpisania aneksu do umowy, prosimy o przesłanie "
                "go w formie elektronicznej, podpiszemy go niezwłocznie."
            ),
        ),
        (
            "Awaria internetu w dniu 14.03",
            (
                "dzisiaj rano, mniej więcej między siódmą a dziesiątą, w całym naszym biurze nie działał "
                "internet. Technik, z którym rozmawiałam telefonicznie, obiecał oddzwonić, ale do tej pory "
                "nikt się nie odezwał. Awaria spowodowała poważne utrudnienia, ponieważ nie mogliśmy "
                "realizować zamówień klientów. Proszę o wyjaśnienie przyczyny oraz informację, jakie kroki "
                "zostaną podjęte, aby sytuacja się nie powtórzyła. Jednocześnie wnoszę o proporcjonalne "
                "obniżenie miesięcznego abonamentu."
            ),
        ),
        (
            "Zwrot pieniędzy za odesłany towar",
            (
                "towar odesłałem w ustawowym terminie czternastu dni, a według potwierdzenia przewoźnika "
                "przesyłka została doręczona do Państwa magazynu dziewiątego. Od tego czasu minęły ponad "
                "trzy tygodnie, a pieniądze wciąż nie wróciły na moje konto. Numer rachunku podałem w "
                "formularzu odstąpienia od umowy. Proszę o sprawdzenie, czy zwrot gdzieś nie utknął, oraz o "
                "potwierdzenie terminu przelewu."
            ),
        ),
        (
            "Prośba o kontakt telefoniczny",
            (
                "czy ktoś z działu technicznego mógłby do mnie zadzwonić? Muszę omówić konfigurację nowej "
                "centrali telefonicznej, a mailowo jest to dość trudne do wyjaśnienia. Najbardziej "
                "odpowiadają mi godziny przedpołudniowe, między dziewiątą a dwunastą, ewentualnie cały "
                "czwartek. Mój numer telefonu znajduje się w stopce. Z góry dziękuję za pomoc."
            ),
        ),
        (
            "Przeniesienie umowy na członka rodziny",
            (
                "chciałabym zapytać, czy można przenieść usługę na innego członka rodziny. Mama przeprowadza "
                "się do nas i chciałaby zrezygnować ze swojej umowy, zachowując jednak numer telefonu, który "
                "znają wszyscy jej znajomi. Jak wygląda procedura i jakie dokumenty będą potrzebne? Czy "
                "trzeba przyjść osobiście, czy można to załatwić przez internet?"
            ),
        ),
        (
            "Pytanie dotyczące rozliczenia za luty",
            (
                "w rozliczeniu za luty znajdują się dwie pozycje, których nie rozumiem: opłata za zmianę "
                "taryfy oraz jednorazowa opłata za transport. Taryfy nie zmienialiśmy i w lutym nie "
                "zamawialiśmy żadnego towaru. Czy mogliby Państwo wyjaśnić, czego dokładnie dotyczą te "
                "kwoty? Jeżeli to pomyłka, proszę o odliczenie ich od następnej faktury."
            ),
        ),
    ),
    details=(
        (
            "Dla porządku dodam, że jesteśmy Państwa klientem od 2016 roku i do tej pory nie mieliśmy "
            "podobnych problemów. Numer klienta to 48213, umowa jest zawarta na firmę, a nie na mnie "
            "prywatnie. Jeżeli potrzebne będą dodatkowe dokumenty, na przykład odpis z KRS lub "
            "pełnomocnictwo, chętnie je dostarczę."
        ),
        (
            "Sytuacja jest dla nas kłopotliwa przede wszystkim dlatego, że zbliża się koniec kwartału i "
            "musimy mieć wszystko uporządkowane przed zamknięciem ksiąg. Będę wdzięczny za choćby krótką "
            "informację, że ktoś zajmuje się sprawą, nawet jeśli ostateczne rozwiązanie potrwa dłużej."
        ),
        (
            "Próbowałem już załatwić sprawę przez formularz na Państwa stronie, ale po wysłaniu pojawił się "
            "błąd i nie wiem, czy zgłoszenie w ogóle dotarło. Dlatego piszę bezpośrednio na ten adres. "
            "Proszę też o informację, gdzie w przyszłości kierować podobne pytania."
        ),
        (
            "W domu mamy dwoje dzieci, które potrzebują internetu do szkoły, a ja sam pracuję zdalnie trzy "
            "dni w tygodniu. Każda przerwa w działaniu usługi jest więc dla nas naprawdę uciążliwa. Będziemy "
            "wdzięczni za potraktowanie sprawy priorytetowo."
        ),
        (
            "Na infolinię dzwoniłam trzy razy, za każdym razem ktoś obiecywał oddzwonić i za każdym razem "
            "nic się nie wydarzyło. Wierzę, że to zbieg okoliczności, ale tym razem wolałabym otrzymać "
            "odpowiedź na piśmie, żeby mieć wszystko udokumentowane."
        ),
        (
            "Załączam również numery wcześniejszych zgłoszeń, jeśli pomogą one odnaleźć historię: "
            "2023-11-0451 oraz 2024-01-0087. W obu przypadkach chodziło o podobny problem, który udało się "
            "wtedy rozwiązać restartem urządzenia po Państwa stronie."
        ),
        (
            "Gdyby zaszła taka potrzeba, mogę przyjechać osobiście do oddziału. Najbliższy mamy w Łodzi przy "
            "ulicy Piotrkowskiej, mam tam blisko z pracy. Proszę tylko o informację, co powinienem zabrać ze "
            "sobą."
        ),
    ),
    followups=(
        (
            "uprzejmie przypominam o mojej wcześniejszej wiadomości, na którą do tej pory nie otrzymałem "
            "odpowiedzi. Sytuacja w międzyczasie się nie zmieniła, a sprawa jest dla nas dość pilna."
        ),
        (
            "przesyłam jeszcze dodatkowe informacje. Dziś rano problem wystąpił ponownie, tym razem około "
            "ósmej. W załączniku zrzut ekranu z komunikatem błędu."
        ),
        (
            "dziękuję za szybką odpowiedź. Niestety zaproponowane rozwiązanie nie pomogło, postępowałem "
            "dokładnie według Państwa instrukcji. Czy mogliby Państwo przyjrzeć się sprawie jeszcze raz?"
        ),
        (
            "chciałabym tylko zapytać, czy w mojej sprawie jest coś nowego. Minął już ponad tydzień, a "
            "dostałam jedynie automatyczne potwierdzenie przyjęcia zgłoszenia."
        ),
    ),
    disclaimer=(
        "Niniejsza wiadomość wraz z załącznikami jest poufna i przeznaczona wyłącznie dla adresata. Jeżeli "
        "nie są Państwo zamierzonym odbiorcą, prosimy o niezwłoczne powiadomienie nadawcy oraz usunięcie "
        "wiadomości wraz z załącznikami. Rozpowszechnianie, kopiowanie lub inne wykorzystanie treści tej "
        "wiadomości jest zabronione. Nadawca nie ponosi odpowiedzialności za szkody wynikłe z przesłania "
        "wirusów ani za zmiany treści powstałe podczas transmisji. Treść wiadomości nie stanowi oferty w "
        "rozumieniu Kodeksu cywilnego, o ile wyraźnie nie zaznaczono inaczej."
    ),
    attribution="W dniu {date} {name} pisze:",
    date_format="{d}.{m:02d}.{y} o {H:02d}:{M:02d}",
    male_first=("Łukasz", "Paweł", "Michał", "Krzysztof", "Tomasz", "Grzegorz", "Piotr", "Wojciech"),
    female_first=("Agnieszka", "Małgorzata", "Katarzyna", "Joanna", "Magdalena", "Żaneta", "Anna", "Ewa"),
    surnames=(
        ("Kowalski", "Kowalska"),
        ("Wiśniewski", "Wiśniewska"),
        ("Wójcik", "Wójcik"),
        ("Kamiński", "Kamińska"),
        ("Lewandowski", "Lewandowska"),
        ("Zieliński", "Zielińska"),
        ("Szymański", "Szymańska"),
        ("Dąbrowski", "Dąbrowska"),
        ("Woźniak", "Woźniak"),
        ("Kozłowski", "Kozłowska"),
        ("Jabłoński", "Jabłońska"),
        ("Mazur", "Mazur"),
    ),
    personal_domains=("wp.pl.example", "onet.pl.example", "interia.pl.example", "o2.pl.example"),
    companies=(
        ("Transport Kowalski Sp. z o.o.", "kowalski-transport.pl.example"),
        ("Piekarnia Źródło", "piekarnia-zrodlo.pl.example"),
        ("Biuro Rachunkowe Łąka", "br-laka.pl.example"),
    ),
    phone_format="+48 {a:03d} {b:03d} {c:03d}",
    order_title="Podsumowanie zamówienia nr {number} z dnia {date}:",
    order_total="Razem do zapłaty (z VAT)",
    currency="zł",
    items=(
        ("Odkurzacz bezprzewodowy", 899),
        ("Filtr HEPA zapasowy", 79),
        ("Szczotka do parkietu", 119),
        ("Przedłużacz 3 m", 39),
        ("Mysz bezprzewodowa", 89),
        ("Klawiatura z polskimi znakami", 149),
        ("Powerbank 20 000 mAh", 159),
        ("Dostawa kurierem", 15),
        ("Lampka biurkowa LED", 99),
        ("Słuchawki z mikrofonem", 229),
        ("Płyn do czyszczenia ekranów", 25),
        ("Przełącznik sieciowy", 139),
        ("Gwarancja rozszerzona o 2 lata", 99),
        ("Uchwyt na monitor", 219),
    ),
    filenames=(
        "faktura_FV_2024_03_117.pdf",
        "zdjęcie uszkodzenia.png",
        "protokół reklamacji.pdf",
        "zrzut.png",
    ),
)

UK = Language(
    code="uk",
    charsets=(("utf-8", 0.4), ("koi8-u", 0.3), ("windows-1251", 0.3)),
    offset_hours=2,
    greetings=("Добрий день,", "Шановна службо підтримки,", "Вітаю,", "Доброго дня, шановні колеги,"),
    closings=("З повагою", "Дякую і гарного дня", "З найкращими побажаннями", "Щиро дякую"),
    topics=(
        (
            "Помилкова сума в рахунку 2024-0117",
            (
                "звертаюся до вас щодо рахунку 2024-0117, який ми отримали минулого тижня. У рахунку вказано "
                "суму за річну підписку, хоча в січні ми замовляли лише квартальний пакет. Прошу перевірити "
                "це і, якщо можливо, виставити виправлений рахунок, щоб ми могли провести документ ще цього "
                "місяця. Наш бухгалтер закриває звітний період п'ятнадцятого числа."
            ),
        ),
        (
            "Недоставлена посилка - замовлення 58812",
            (
                "замовлення було оплачено дванадцятого березня, і згідно з підтвердженням його мали "
                "доставити протягом п'яти робочих днів. Проте посилка досі не надійшла, а відстеження у "
                "перевізника вже тиждень показує той самий статус: передано на доставку. На гарячій лінії я "
                "чекав понад двадцять хвилин, після чого з'єднання обірвалося. Чи можете ви перевірити, де "
                "зараз посилка і коли я можу її очікувати? Якщо питання не буде вирішено до кінця тижня, я "
                "волів би скасувати замовлення та отримати повернення коштів."
            ),
        ),
        (
            "Рекламація холодильника",
            (
                "придбаний холодильник перестав працювати через три тижні після встановлення. Компресор "
                "вмикається на кілька секунд, потім вимикається, а на дисплеї з'являється код помилки E4. Я "
                "перевірив живлення та налаштування температури згідно з інструкцією, але нічого не "
                "допомогло. Тому хочу подати рекламацію в межах гарантії. У додатку надсилаю чек і фото "
                "заводської таблички з серійним номером. Повідомте, будь ласка, чи приїде майстер додому, чи "
                "потрібно везти техніку до сервісного центру у Львові."
            ),
        ),
        (
            "Не можу увійти до особистого кабінету",
            (
                "з учорашнього дня я не можу увійти до особистого кабінету. Після введення пароля сторінка "
                "перезавантажується і з'являється повідомлення, що сеанс закінчився. Я пробувала різні "
                "браузери, а також мобільний телефон, результат завжди однаковий. Скидання пароля через "
                "електронну пошту пройшло успішно, але навіть з новим паролем увійти не вдається. Мені "
                "потрібно завантажити рахунок за лютий, тому дуже прошу про швидку допомогу."
            ),
        ),
        (
            "Зміна юридичної адреси компанії",
            (
                "повідомляємо про зміну юридичної адреси нашої компанії. З першого квітня ми знаходимося за "
                "адресою: вул. Городоцька, 174, офіс 12, м. Львів, 79022. Просимо оновити дані в договорі та "
                "в усіх майбутніх рахунках. Контактна особа і банківські реквізити залишаються без змін. "
                "Якщо для цього потрібно підписати додаткову угоду, надішліть її, будь ласка, в електронному "
                "вигляді, ми підпишемо її без затримки."
            ),
        ),
        (
            "Відсутність інтернету 14 березня",
            (
                "сьогодні вранці, приблизно з сьомої до десятої години, в усьому нашому офісі не працював "
                "інтернет. Технік, з яким я розмовляла телефоном, пообіцяв передзвонити, але досі ніхто не "
                "зв'язався. Збій завдав нам серйозних незручностей, адже ми не могли обробляти замовлення "
                "клієнтів. Прошу пояснити причину та повідомити, яких заходів буде вжито, щоб ситуація не "
                "повторилася. Водночас прошу про пропорційне зменшення щомісячної абонентської плати."
            ),
        ),
        (
            "Повернення коштів за повернений товар",
            (
                "я повернув товар у встановлений законом чотирнадцятиденний строк, і за підтвердженням "
                "перевізника посилку було доставлено на ваш склад дев'ятого числа. Відтоді минуло понад три "
                "тижні, а кошти досі не надійшли на мій рахунок. Номер рахунку я вказав у формі відмови від "
                "договору. Прошу перевірити, чи не затрималося повернення, і підтвердити дату переказу."
            ),
        ),
        (
            "Прохання зателефонувати",
            (
                "чи міг би хтось із технічного відділу мені зателефонувати? Мені потрібно обговорити "
                "налаштування нової телефонної станції, а листом це досить складно пояснити. Найзручніше "
                "мені зранку, з дев'ятої до дванадцятої, або в четвер протягом усього дня. Мій номер "
                "телефону вказаний у підписі. Заздалегідь дякую за допомогу."
            ),
        ),
        (
            "Переоформлення договору на члена родини",
            (
                "хотіла б запитати, чи можна переоформити послугу на іншого члена родини. Мама переїжджає до "
                "нас і хоче розірвати свій договір, але зберегти номер телефону, який знають усі її знайомі. "
                "Яка процедура і які документи будуть потрібні? Чи обов'язково приходити особисто, чи це "
                "можна зробити онлайн?"
            ),
        ),
        (
            "Питання щодо рахунку за лютий",
            (
                "у рахунку за лютий є дві позиції, яких я не розумію: плата за зміну тарифу та одноразова "
                "плата за доставку. Тариф ми не змінювали і в лютому нічого не замовляли. Чи могли б ви "
                "пояснити, за що саме нараховано ці суми? Якщо це помилка, прошу вирахувати їх із наступного "
                "рахунку."
            ),
        ),
    ),
    details=(
        (
            "Для повноти додам, що ми є вашими клієнтами з 2016 року і раніше подібних проблем не мали. "
            "Номер клієнта 48213, договір укладено на компанію, а не на мене особисто. Якщо знадобляться "
            "додаткові документи, наприклад виписка з реєстру чи довіреність, я охоче їх надам."
        ),
        (
            "Ситуація для нас неприємна насамперед тому, що наближається кінець кварталу і нам потрібно мати "
            "все в порядку до закриття звітності. Буду вдячний хоча б за коротке повідомлення, що питанням "
            "хтось займається, навіть якщо остаточне рішення потребуватиме часу."
        ),
        (
            "Я вже намагався вирішити питання через форму на вашому сайті, але після надсилання з'явилася "
            "помилка, і я не знаю, чи звернення взагалі надійшло. Тому пишу безпосередньо на цю адресу. "
            "Підкажіть, будь ласка, куди надалі звертатися з подібними питаннями."
        ),
        (
            "Удома в нас двоє дітей, яким інтернет потрібен для навчання, а я сам три дні на тиждень працюю "
            "віддалено. Тож кожна перерва в роботі послуги нас справді обмежує. Будемо вдячні, якщо ви "
            "розглянете питання першочергово."
        ),
        (
            "Я телефонувала на гарячу лінію тричі, щоразу мені обіцяли передзвонити, і щоразу нічого не "
            "відбувалося. Вірю, що це збіг обставин, але цього разу хотіла б отримати відповідь письмово, "
            "щоб усе було задокументовано."
        ),
        (
            "Додаю також номери попередніх звернень, якщо вони допоможуть знайти історію: 2023-11-0451 та "
            "2024-01-0087. В обох випадках ішлося про схожу проблему, яку тоді вдалося вирішити перезапуском "
            "обладнання з вашого боку."
        ),
        (
            "За потреби можу приїхати до відділення особисто. Найближче до нас у Києві на Хрещатику, мені "
            "туди зручно добиратися з роботи. Лише напишіть, будь ласка, що потрібно взяти з собою."
        ),
    ),
    followups=(
        (
            "дозвольте нагадати про мій попередній лист, на який я досі не отримав відповіді. Ситуація тим "
            "часом не змінилася, а справа для нас досить термінова."
        ),
        (
            "надсилаю ще додаткову інформацію. Сьогодні вранці проблема виникла знову, цього разу близько "
            "восьмої години. У додатку знімок екрана з повідомленням про помилку."
        ),
        (
            "дякую за швидку відповідь. На жаль, запропоноване рішення не допомогло, я діяв точно за вашими "
            "інструкціями. Чи не могли б ви переглянути це питання ще раз?"
        ),
        (
            "хочу лише запитати, чи є щось нове в моїй справі. Минуло вже понад тиждень, а я отримала тільки "
            "автоматичне підтвердження про отримання звернення."
        ),
    ),
    disclaimer=(
        "Цей лист і всі вкладення є конфіденційними та призначені виключно для адресата. Якщо ви не є "
        "належним одержувачем, будь ласка, негайно повідомте про це відправника та видаліть лист разом із "
        "вкладеннями. Будь-яке поширення, копіювання чи інше використання змісту цього листа заборонено. "
        "Відправник не несе відповідальності за шкоду, спричинену передаванням комп'ютерних вірусів, або за "
        "зміни змісту, що виникли під час передавання."
    ),
    attribution="{date} {name} пише:",
    date_format="{d:02d}.{m:02d}.{y} о {H:02d}:{M:02d}",
    male_first=("Олександр", "Андрій", "Дмитро", "Сергій", "Тарас", "Юрій", "Богдан", "Василь"),
    female_first=("Олена", "Наталія", "Ірина", "Оксана", "Тетяна", "Ганна", "Ольга", "Юлія"),
    surnames=(
        ("Шевченко", "Шевченко"),
        ("Коваленко", "Коваленко"),
        ("Бондаренко", "Бондаренко"),
        ("Ткаченко", "Ткаченко"),
        ("Кравченко", "Кравченко"),
        ("Олійник", "Олійник"),
        ("Мельник", "Мельник"),
        ("Ковальчук", "Ковальчук"),
        ("Поліщук", "Поліщук"),
        ("Гнатюк", "Гнатюк"),
        ("Лисенко", "Лисенко"),
        ("Білоус", "Білоус"),
    ),
    personal_domains=("ukr.net.example", "i.ua.example", "meta.ua.example", "gmail.com.example"),
    companies=(
        ("ТОВ Агро-Львів", "agro-lviv.com.ua.example"),
        ("ФОП Гнатюк", "gnatyuk-fop.com.ua.example"),
        ("Київські пекарні", "kyiv-bakery.ua.example"),
    ),
    phone_format="+380 67 {a:03d} {b:02d} {c:02d}",
    order_title="Підсумок замовлення {number} від {date}:",
    order_total="Разом до сплати з ПДВ",
    currency="грн",
    items=(
        ("Холодильник двокамерний", 18999),
        ("Фільтр для води", 349),
        ("Подовжувач 3 м", 289),
        ("Бездротова миша", 499),
        ("Клавіатура з українською розкладкою", 899),
        ("Павербанк 20 000 мАг", 1199),
        ("Доставка Новою поштою", 120),
        ("Настільна лампа LED", 749),
        ("Органайзер для кабелів", 259),
        ("Навушники з мікрофоном", 1599),
        ("Засіб для чищення екранів", 139),
        ("Мережевий комутатор", 999),
        ("Розширена гарантія на 2 роки", 1499),
        ("Кронштейн для монітора", 1349),
    ),
    filenames=("рахунок_2024-0117.pdf", "фото.png", "акт рекламації.pdf", "знімок екрана.png"),
)

EN = Language(
    code="en",
    charsets=(("us-ascii", 0.5), ("utf-8", 0.5)),
    offset_hours=0,
    greetings=("Hello,", "Dear Support Team,", "Hi there,", "Good morning,"),
    closings=("Kind regards", "Best regards", "Many thanks", "Thanks in advance"),
    topics=(
        (
            "Wrong amount on invoice 2024-0117",
            (
                "I am writing about invoice 2024-0117, which we received last week. The invoice charges us "
                "for a twelve-month subscription, although in January we only ordered the quarterly plan. "
                "Could you please check this and, if necessary, issue a corrected invoice so that we can "
                "book it before the end of the month? Our accountant closes the period on the fifteenth."
            ),
        ),
        (
            "Parcel not delivered - order 58812",
            (
                "the order was paid on the twelfth of March and, according to the confirmation, it should "
                "have been delivered within five working days. The parcel still has not arrived, and the "
                "carrier's tracking page has shown the same status for a week now: handed over for delivery. "
                "I waited on your helpline for more than twenty minutes before the call dropped. Could you "
                "tell me where the parcel is and when I can expect it? If this cannot be sorted out by the "
                "end of the week, I would rather cancel the order and get a refund."
            ),
        ),
        (
            "Warranty claim - dishwasher",
            (
                "the dishwasher we bought stopped working after three weeks. It fills with water, runs for a "
                "minute and then stops with error code E24 on the display. I have cleaned the filter and "
                "checked the drain hose as described in the manual, with no result. I would therefore like "
                "to make a claim under the warranty. The receipt and a photo of the rating plate with the "
                "serial number are attached. Please let me know whether an engineer will visit or whether I "
                "should bring the appliance to your service centre in Leeds."
            ),
        ),
        (
            "Cannot log in to my account",
            (
                "since yesterday afternoon I have not been able to log in to the customer portal. After I "
                "enter my password the page reloads and says that my session has expired. I have tried "
                "several browsers and my phone, always with the same result. Resetting the password by "
                "e-mail worked, but even with the new password I cannot get in. I need to download the "
                "February statement, so I would be grateful for quick help."
            ),
        ),
        (
            "Change of registered address",
            (
                "we would like to let you know that our registered office is moving. From the first of April "
                "our address will be Unit 4, Riverside Business Park, Mill Lane, Bristol BS1 6XY. Please "
                "update the details on our contract and on all future invoices. The contact person and bank "
                "details stay the same. If the change requires an amendment to the contract, please send it "
                "electronically and we will sign it straight away."
            ),
        ),
        (
            "Internet outage on 14 March",
            (
                "this morning, roughly between seven and ten o'clock, the internet connection was down in "
                "our whole office. The engineer I spoke to on the phone promised to call me back, but nobody "
                "has been in touch yet. The outage caused us real trouble because we could not process "
                "customer orders. Please explain what caused it and what you will do to make sure it does "
                "not happen again. I would also like to ask for a pro rata reduction of this month's fee."
            ),
        ),
        (
            "Refund for returned goods",
            (
                "I returned the goods within the fourteen-day cancellation period, and according to the "
                "carrier the parcel was delivered to your warehouse on the ninth. More than three weeks have "
                "passed since then and I still have not received the refund. I gave my account number on the "
                "cancellation form. Could you check whether the refund is stuck somewhere and confirm when "
                "the money will reach my account?"
            ),
        ),
        (
            "Request for a call back",
            (
                "could someone from the technical team give me a call? I need to go through the set-up of "
                "our new phone system, and it is rather difficult to explain by e-mail. Mornings between "
                "nine and twelve suit me best, or any time on Thursday. My number is in the signature below. "
                "Thank you in advance."
            ),
        ),
        (
            "Transferring a contract to a family member",
            (
                "I would like to ask whether a contract can be transferred to another member of the family. "
                "My mother is moving in with us and would like to close her contract but keep her phone "
                "number, which all her friends know. What is the procedure and which documents will we need? "
                "Do we have to come in person, or can it be done online?"
            ),
        ),
        (
            "Question about the February bill",
            (
                "there are two items on the February bill that I do not understand: a tariff change fee and "
                "a one-off delivery charge. We have not changed our tariff and we did not order anything in "
                "February. Could you please explain what these amounts are for? If it is a mistake, please "
                "deduct them from the next invoice."
            ),
        ),
    ),
    details=(
        (
            "For completeness, we have been your customer since 2016 and have never had a problem like this "
            "before. Our customer number is 48213, and the contract is in the company's name rather than "
            "mine. If you need any further documents, such as a certificate of incorporation or a letter of "
            "authority, I will gladly provide them."
        ),
        (
            "The timing is awkward mainly because the end of the quarter is approaching and we need "
            "everything in order before the books are closed. I would appreciate even a short note that "
            "someone is looking into it, even if the final answer takes a little longer."
        ),
        (
            "I already tried to report this through the form on your website, but it showed an error after I "
            "pressed send and I am not sure whether the request reached you at all. That is why I am writing "
            "to this address directly. Please also let me know where I should send questions like this in "
            "future."
        ),
        (
            "We have two children at home who need the internet for school, and I work from home three days "
            "a week myself. Every interruption therefore really affects us. We would appreciate it if you "
            "could treat this as a priority."
        ),
        (
            "I have called the helpline three times; each time someone promised to call me back and each "
            "time nothing happened. I am sure it was just bad luck, but this time I would prefer to have the "
            "answer in writing so that everything is documented."
        ),
        (
            "I am also including the numbers of my earlier requests in case they help you find the history: "
            "2023-11-0451 and 2024-01-0087. Both were about a similar problem, which was fixed at the time "
            "by restarting the equipment on your side."
        ),
        (
            "If it helps, I can come to a branch in person. The nearest one is on Deansgate in Manchester, "
            "which is close to my office. Just let me know what I should bring with me."
        ),
    ),
    utf8_only_details=(
        (
            "For reference, the amount in question is €1,249.00 — about 30 % more than the figure your "
            "colleague Zoë quoted in her e-mail of 2 March (“Quarterly plan, billed in advance”). I’m sure "
            "it’s a simple mix-up, but I’d like it corrected before our café’s accounts are filed."
        ),
    ),
    followups=(
        (
            "I am following up on my previous e-mail, to which I have not yet had a reply. Nothing has "
            "changed in the meantime and the matter is fairly urgent for us."
        ),
        (
            "here is some additional information. The problem happened again this morning, this time at "
            "around eight o'clock. I have attached a screenshot of the error message."
        ),
        (
            "thank you for the quick response. Unfortunately the suggested fix did not help; I followed your "
            "instructions exactly. Could you please take another look?"
        ),
        (
            "I just wanted to ask whether there is any news on my case. It has been more than a week, and so "
            "far I have only received the automatic acknowledgement."
        ),
    ),
    disclaimer=(
        "This e-mail and any attachments are confidential and intended solely for the addressee. If you are "
        "not the intended recipient, please notify the sender immediately and delete this message together "
        "with any attachments. Any dissemination, copying or other use of its contents is prohibited. The "
        "sender accepts no liability for damage caused by computer viruses or for changes made to this "
        "message during transmission. Nothing in this message constitutes a binding commitment unless "
        "expressly stated."
    ),
    attribution="On {date}, {name} <{address}> wrote:",
    date_format="{wd}, {d} {mon} {y} at {H:02d}:{M:02d}",
    male_first=("James", "Oliver", "Harry", "George", "Daniel", "Thomas", "Samuel", "Michael"),
    female_first=("Emily", "Charlotte", "Sophie", "Amelia", "Hannah", "Grace", "Lucy", "Rachel"),
    surnames=(
        ("Smith", "Smith"),
        ("Jones", "Jones"),
        ("Taylor", "Taylor"),
        ("Brown", "Brown"),
        ("Williams", "Williams"),
        ("Wilson", "Wilson"),
        ("Evans", "Evans"),
        ("Walker", "Walker"),
        ("O'Neill", "O'Neill"),
        ("Hughes", "Hughes"),
    ),
    personal_domains=("gmail.com.example", "outlook.com.example", "btinternet.com.example"),
    companies=(
        ("Northwind Traders Ltd", "northwind-traders.co.uk.example"),
        ("Riverside Dental Practice", "riverside-dental.co.uk.example"),
        ("Hartley & Sons Joinery", "hartley-joinery.co.uk.example"),
    ),
    phone_format="+44 20 7946 {a:04d}",
    order_title="Order summary, order {number} of {date}:",
    order_total="Total due incl. VAT",
    currency="GBP",
    items=(
        ("Dishwasher, 60 cm, freestanding", 429),
        ("Rinse aid 500 ml", 4),
        ("Extension lead 3 m", 12),
        ("Wireless mouse", 19),
        ("Keyboard, UK layout", 29),
        ("Power bank 20,000 mAh", 35),
        ("Delivery and installation", 45),
        ("LED desk lamp", 24),
        ("Cable organiser", 9),
        ("Headset with microphone", 49),
        ("Screen cleaner 200 ml", 6),
        ("8-port network switch", 27),
        ("Extended warranty, 2 years", 59),
        ("Monitor arm", 39),
    ),
    filenames=("invoice-2024-0117.pdf", "screenshot.png", "rating plate.png", "claim form.pdf"),
)

LANGUAGES: tuple[tuple[Language, float], ...] = ((CS, 0.35), (PL, 0.25), (UK, 0.20), (EN, 0.20))

# English names that need UTF-8 (only for senders whose client writes UTF-8).
EN_UTF8_NAMES = (("Zoë", "Hartley"), ("Seán", "Ó Briain"), ("Chloé", "Dubois"), ("Björn", "Lindqvist"))

_TRANSLIT = {
    # Ukrainian (national transliteration, simplified) and the Czech/Polish letters, for address local parts.
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "h",
    "ґ": "g",
    "д": "d",
    "е": "e",
    "є": "ie",
    "ж": "zh",
    "з": "z",
    "и": "y",
    "і": "i",
    "ї": "i",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ь": "",
    "ю": "iu",
    "я": "ia",
    "'": "",
    " ": "",
    "ł": "l",
    "á": "a",
    "č": "c",
    "ď": "d",
    "é": "e",
    "ě": "e",
    "í": "i",
    "ň": "n",
    "ó": "o",
    "ř": "r",
    "š": "s",
    "ť": "t",
    "ú": "u",
    "ů": "u",
    "ý": "y",
    "ž": "z",
    "ą": "a",
    "ć": "c",
    "ę": "e",
    "ń": "n",
    "ś": "s",
    "ź": "z",
    "ż": "z",
    "ë": "e",
    "ö": "o",
}


@dataclass(frozen=True)
class Mailer:
    """A mail client and the path its mail takes: how it writes HTML, which transport headers it picks up."""

    name: str
    agent_header: tuple[str, str] | None
    html_style: str  # "outlook" | "gmail" | "simple"
    transport: str  # "exchange" | "gmail" | "plain"
    weight: float


MAILERS = (
    Mailer("outlook", ("X-Mailer", "Microsoft Outlook 16.0"), "outlook", "exchange", 0.40),
    Mailer("gmail", None, "gmail", "gmail", 0.20),
    Mailer(
        "thunderbird",
        (
            "User-Agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.8.1",
        ),
        "simple",
        "plain",
        0.15,
    ),
    Mailer("apple", ("X-Mailer", "Apple Mail (2.3774.400.31)"), "simple", "plain", 0.05),
    Mailer("roundcube", ("User-Agent", "Roundcube Webmail/1.6.5"), "simple", "plain", 0.08),
    Mailer("thebat", ("X-Mailer", "The Bat! (v9.4.5) Professional"), "simple", "plain", 0.06),
    Mailer("seznam", ("X-Mailer", "Seznam.cz Email"), "simple", "plain", 0.06),
)

OUTLOOK_HEAD = """<html xmlns:v="urn:schemas-microsoft-com:vml"
xmlns:o="urn:schemas-microsoft-com:office:office"
xmlns:w="urn:schemas-microsoft-com:office:word"
xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">
<head>
<meta http-equiv="Content-Type" content="text/html; charset={charset}">
<meta name="Generator" content="Microsoft Word 15 (filtered medium)">
<style><!--
/* Font Definitions */
@font-face
	{{font-family:"Cambria Math";
	panose-1:2 4 5 3 5 4 6 3 2 4;}}
@font-face
	{{font-family:Calibri;
	panose-1:2 15 5 2 2 2 4 3 2 4;}}
@font-face
	{{font-family:Aptos;}}
@font-face
	{{font-family:"Segoe UI";
	panose-1:2 11 5 2 4 2 4 2 2 3;}}
/* Style Definitions */
p.MsoNormal, li.MsoNormal, div.MsoNormal
	{{margin:0cm;
	font-size:11.0pt;
	font-family:"Calibri",sans-serif;
	mso-ligatures:standardcontextual;
	mso-fareast-language:EN-US;}}
a:link, span.MsoHyperlink
	{{mso-style-priority:99;
	color:#0563C1;
	text-decoration:underline;}}
span.EmailStyle17
	{{mso-style-type:personal-compose;
	font-family:"Calibri",sans-serif;
	color:windowtext;}}
.MsoChpDefault
	{{mso-style-type:export-only;
	font-size:10.0pt;
	mso-ligatures:none;
	mso-fareast-language:EN-US;}}
@page WordSection1
	{{size:612.0pt 792.0pt;
	margin:70.85pt 70.85pt 70.85pt 70.85pt;}}
div.WordSection1
	{{page:WordSection1;}}
/* List Definitions */
@list l0
	{{mso-list-id:1180579375;
	mso-list-type:hybrid;
	mso-list-template-ids:-1598408006 67698703 67698713 67698715 67698703 67698713
	67698715 67698703 67698713 67698715;}}
@list l0:level1
	{{mso-level-tab-stop:none;
	mso-level-number-position:left;
	text-indent:-18.0pt;}}
@list l0:level2
	{{mso-level-number-format:alpha-lower;
	mso-level-tab-stop:none;
	mso-level-number-position:left;
	text-indent:-18.0pt;}}
ol
	{{margin-bottom:0cm;}}
ul
	{{margin-bottom:0cm;}}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--><!--[if gte mso 9]><xml>
<o:shapelayout v:ext="edit">
<o:idmap v:ext="edit" data="1" />
</o:shapelayout></xml><![endif]-->
</head>
<body lang="{lang}" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">
<div class="WordSection1">
"""

SIMPLE_HEAD = """<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset={charset}">
  </head>
  <body>
"""


@dataclass(frozen=True)
class Sender:
    """One customer: the same name, address, language and mail client on every mail they send."""

    name: str
    address: str
    language: Language
    charset: str
    header_encoding: int  # email.charset.QP or BASE64, as their client writes RFC 2047 words
    mailer: Mailer
    company: str | None
    phone: str
    bare_address: bool  # no display name in From


@dataclass
class CorpusMail:
    """One generated mail and what it was generated from, for checks and for the benchmark's bookkeeping."""

    index: int
    raw: bytes
    message_id: str
    sender: Sender
    subject: str
    charset: str
    transfer_encoding: str
    text: str  # the text/plain body as the customer wrote it, LF line endings
    html: str | None
    attachment: tuple[str, str, bytes] | None  # (filename, content type, data)
    in_reply_to: str | None
    references: list[str] = field(default_factory=list)
    date: datetime = START

    @property
    def language(self) -> str:
        return self.sender.language.code


def generate_corpus(n: int, seed: int) -> list[bytes]:
    """``n`` raw mails in SMTP wire format, the same bytes for the same ``(n, seed)``."""
    return [mail.raw for mail in generate_mails(n, seed)]


def generate_mails(n: int, seed: int, *, to: str = "support@localhost") -> list[CorpusMail]:
    """``n`` mails with their generation record; 30 % of them reply to an earlier mail of the same sender."""
    rng = random.Random(seed)
    senders = _make_senders(rng)
    weights = [1.0 / (rank + 1) ** 0.5 for rank in range(len(senders))]
    reply_count = round(n * REPLY_SHARE) if n > 1 else 0
    replies = set(rng.sample(range(1, n), reply_count)) if reply_count else set()
    mails: list[CorpusMail] = []
    date = START
    for index in range(n):
        date += timedelta(seconds=rng.randint(20, 600))
        parent: CorpusMail | None = None
        if index in replies:
            parent = mails[rng.randrange(index)]
            sender = parent.sender
        else:
            sender = rng.choices(senders, weights)[0]
        mail = _make_mail(rng, index=index, seed=seed, sender=sender, parent=parent, date=date, to=to)
        mails.append(mail)
    return mails


def _weighted(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([value for value, _ in options], [weight for _, weight in options])[0]


def _ascii_slug(text: str) -> str:
    return "".join(_TRANSLIT.get(char, char) for char in text.lower() if char.isalnum() or char in "' ")


def _make_senders(rng: random.Random) -> list[Sender]:
    senders: list[Sender] = []
    seen: set[str] = set()
    languages = [language for language, _ in LANGUAGES]
    language_weights = [weight for _, weight in LANGUAGES]
    while len(senders) < SENDER_COUNT:
        language = rng.choices(languages, language_weights)[0]
        charset = _weighted(rng, language.charsets)
        female = rng.random() < 0.5
        first = rng.choice(language.female_first if female else language.male_first)
        surname = rng.choice(language.surnames)[1 if female else 0]
        if language is EN and charset == "utf-8" and rng.random() < 0.4:
            first, surname = rng.choice(EN_UTF8_NAMES)
        name = f"{first} {surname}"
        company = None
        if rng.random() < 0.45:
            company, domain = rng.choice(language.companies)
        else:
            domain = rng.choice(language.personal_domains)
        first_slug, last_slug = _ascii_slug(first), _ascii_slug(surname)
        local = rng.choice(
            [f"{first_slug}.{last_slug}", f"{first_slug[0]}{last_slug}", f"{last_slug}{rng.randint(1, 99)}"]
        )
        address = f"{local}@{domain}"
        if address in seen:
            continue
        seen.add(address)
        mailer = rng.choices(MAILERS, [m.weight for m in MAILERS])[0]
        senders.append(
            Sender(
                name=name,
                address=address,
                language=language,
                charset=charset,
                header_encoding=rng.choice((QP, BASE64)),
                mailer=mailer,
                company=company,
                phone=language.phone_format.format(
                    a=rng.randint(100, 999 if language is not EN else 9999),
                    b=rng.randint(10, 999 if language is not UK else 99),
                    c=rng.randint(10, 999 if language is not UK else 99),
                ),
                bare_address=rng.random() < 0.1,
            )
        )
    return senders


def _transfer_encoding(rng: random.Random, charset: str) -> str:
    if charset == "us-ascii":
        return "7bit"
    if charset == "utf-8":
        return rng.choice(("quoted-printable", "base64", "8bit"))
    return rng.choices(("quoted-printable", "8bit", "base64"), (0.5, 0.35, 0.15))[0]


def _format_quote_date(language: Language, when: datetime) -> str:
    local = when.astimezone(timezone(timedelta(hours=language.offset_hours)))
    return language.date_format.format(
        d=local.day,
        m=local.month,
        y=local.year,
        H=local.hour,
        M=local.minute,
        wd=local.strftime("%a"),
        mon=local.strftime("%b"),
    )


def _make_mail(
    rng: random.Random,
    *,
    index: int,
    seed: int,
    sender: Sender,
    parent: CorpusMail | None,
    date: datetime,
    to: str,
) -> CorpusMail:
    language = sender.language
    charset = sender.charset
    message_id = f"<bench-{seed}-{index}@example.net>"

    # Blocks: ("p", paragraph) | ("table", tab-separated rows) | ("sig", lines) | ("attribution", line)
    # | ("quote", text); rendered once as text/plain and, for multipart/alternative, once as HTML.
    blocks: list[tuple[str, str]] = [("p", rng.choice(language.greetings))]
    if parent is None:
        subject, opening = rng.choice(language.topics)
        paragraphs = [opening]
        details = list(language.details)
        if charset == "utf-8":
            details += language.utf8_only_details
        paragraphs += rng.sample(details, rng.randint(3, len(details)))
        references: list[str] = []
        in_reply_to = None
    else:
        subject = parent.subject if parent.subject.startswith("Re: ") else f"Re: {parent.subject}"
        paragraphs = [rng.choice(language.followups)]
        paragraphs += rng.sample(language.details, rng.randint(0, 2))
        references = (parent.references + [parent.message_id])[-10:]
        in_reply_to = parent.message_id
    paragraphs[0] = paragraphs[0][0].upper() + paragraphs[0][1:]
    blocks += [("p", paragraph) for paragraph in paragraphs[:2]]
    if parent is None and rng.random() < ORDER_SHARE:
        blocks += _order_blocks(rng, language, date)
    blocks += [("p", paragraph) for paragraph in paragraphs[2:]]
    blocks.append(("p", rng.choice(language.closings) + ("," if language is EN else "")))
    signature = [sender.name]
    if sender.company:
        signature.append(sender.company)
    signature.append(sender.phone)
    blocks.append(("sig", "\n".join(signature)))
    if sender.company and rng.random() < 0.7:
        blocks.append(("p", language.disclaimer))
    if parent is not None:
        blocks.append(
            (
                "attribution",
                language.attribution.format(
                    date=_format_quote_date(language, parent.date),
                    name=parent.sender.name,
                    address=parent.sender.address,
                ),
            )
        )
        quoted = parent.text
        if len(quoted) > MAX_QUOTED_CHARS:
            quoted = quoted[:MAX_QUOTED_CHARS].rsplit("\n", 1)[0] + "\n[...]\n"
        blocks.append(("quote", quoted))

    text = _render_text(blocks)
    style = sender.mailer.html_style
    alternative = rng.random() < ALTERNATIVE_SHARE
    html_text = (
        _render_html(blocks, charset=charset, style=style, lang=language.code) if alternative else None
    )
    attachment = _make_attachment(rng, language) if rng.random() < ATTACHMENT_SHARE else None
    cte = _transfer_encoding(rng, charset)

    body_part = _text_part("plain", text, charset, cte)
    if html_text is not None:
        boundary = _boundary(rng, style)
        body_part = _multipart(
            "alternative", boundary, [body_part, _text_part("html", html_text, charset, cte)]
        )
    if attachment is not None:
        boundary = _boundary(rng, style)
        body_part = _multipart("mixed", boundary, [body_part, _attachment_part(*attachment)])

    headers = _headers(
        rng,
        sender=sender,
        subject=subject,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        date=date,
        to=to,
        has_attachment=attachment is not None,
    )
    raw = (CRLF.join(headers) + CRLF).encode("ascii") + body_part
    for line in raw.split(b"\r\n"):
        # RFC 5322 §2.1.1: 998 octets is the hard limit; text is wrapped at 72-76 characters.
        assert len(line) <= 998, line[:80]
    return CorpusMail(
        index=index,
        raw=raw,
        message_id=message_id,
        sender=sender,
        subject=subject,
        charset=charset,
        transfer_encoding=cte,
        text=text,
        html=html_text,
        attachment=attachment,
        in_reply_to=in_reply_to,
        references=references,
        date=date,
    )


def _money(language: Language, amount: int) -> str:
    if language.currency == "GBP":
        return f"{amount:,.2f} GBP"
    return f"{amount:,.2f}".replace(",", " ").replace(".", ",") + f" {language.currency}"


def _order_blocks(rng: random.Random, language: Language, date: datetime) -> list[tuple[str, str]]:
    """A pasted order summary: a title paragraph and a table block of ``quantity\\tproduct\\tprice`` rows."""
    ordered = date - timedelta(days=rng.randint(3, 30))
    day = {
        "cs": f"{ordered.day}. {ordered.month}. {ordered.year}",
        "en": f"{ordered.day} {ordered.strftime('%B')} {ordered.year}",
    }.get(language.code, f"{ordered.day:02d}.{ordered.month:02d}.{ordered.year}")
    title = language.order_title.format(number=rng.randint(10000, 99999), date=day)
    rows = []
    total = 0
    for product, price in rng.sample(language.items, rng.randint(5, 14)):
        quantity = rng.choice((1, 1, 1, 2, 3))
        total += quantity * price
        rows.append(f"{quantity}\t{product}\t{_money(language, quantity * price)}")
    rows.append(f"\t{language.order_total}\t{_money(language, total)}")
    return [("p", title), ("table", "\n".join(rows))]


def _wrap(paragraph: str, width: int = 72) -> list[str]:
    return textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""]


def _render_text(blocks: list[tuple[str, str]]) -> str:
    lines: list[str] = []
    for kind, value in blocks:
        if kind == "p":
            lines += _wrap(value)
            lines.append("")
        elif kind == "sig":
            # RFC 3676 §4.3: the signature separator is "-- " with its trailing space.
            lines.append("-- ")
            lines += value.split("\n")
            lines.append("")
        elif kind == "table":
            for row in value.split("\n"):
                quantity, product, price = row.split("\t")
                lines.append(f"{quantity + ' x' if quantity else '':>4} {product:<40} {price:>16}".rstrip())
            lines.append("")
        elif kind == "attribution":
            lines += _wrap(value)
        elif kind == "quote":
            for quoted in value.rstrip("\n").split("\n"):
                lines.append(">" + quoted if quoted.startswith(">") else ("> " + quoted).rstrip())
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_html(blocks: list[tuple[str, str]], *, charset: str, style: str, lang: str) -> str:
    if style == "outlook":
        return _render_outlook_html(blocks, charset=charset, lang=lang)
    if style == "gmail":
        return _render_gmail_html(blocks)
    return _render_simple_html(blocks, charset=charset)


def _render_outlook_html(blocks: list[tuple[str, str]], *, charset: str, lang: str) -> str:
    """Word-generated HTML, as Outlook sends it: every paragraph a styled ``MsoNormal`` with its spans."""
    span = (
        f'<span lang="{lang.upper()}" style="font-size:11.0pt;font-family:&quot;Calibri&quot;,sans-serif;'
        'mso-fareast-language:EN-US">'
    )
    out = OUTLOOK_HEAD.format(charset=charset, lang=lang.upper()).splitlines()
    for kind, value in blocks:
        escaped = html.escape(value, quote=False)
        if kind == "p":
            out += _wrap(f'<p class="MsoNormal">{span}{escaped}<o:p></o:p></span></p>', 76)
            out += _wrap(f'<p class="MsoNormal">{span}<o:p>&nbsp;</o:p></span></p>', 76)
        elif kind == "sig":
            for line in escaped.split("\n"):
                out += _wrap(
                    f'<p class="MsoNormal"><b><span style="font-size:9.0pt;color:#595959;mso-ligatures:none;'
                    f'mso-fareast-language:{lang.upper()}">{line}<o:p></o:p></span></b></p>',
                    76,
                )
        elif kind == "table":
            out.append(
                '<table class="MsoNormalTable" border="0" cellspacing="0" cellpadding="0"'
                ' style="border-collapse:collapse">'
            )
            out.append("<tbody>")
            for row in escaped.split("\n"):
                out.append("<tr>")
                for cell, width in zip(row.split("\t"), (40, 260, 90), strict=True):
                    out += _wrap(
                        f'<td width="{width}" valign="top" style="width:{width * 0.75:.1f}pt;'
                        f'padding:0cm 5.4pt 0cm 5.4pt"><p class="MsoNormal">{span}{cell or "&nbsp;"}'
                        "<o:p></o:p></span></p></td>",
                        76,
                    )
                out.append("</tr>")
            out += ["</tbody>", "</table>", f'<p class="MsoNormal">{span}<o:p>&nbsp;</o:p></span></p>']
        elif kind == "attribution":
            out.append('<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">')
            out += _wrap(f'<p class="MsoNormal"><b>{span}{escaped}<o:p></o:p></span></b></p>', 76)
            out.append("</div>")
        elif kind == "quote":
            out.append('<div style="border:none;border-left:solid #CCCCCC 1.0pt;padding:0cm 0cm 0cm 6.0pt">')
            for line in escaped.rstrip("\n").split("\n"):
                out += _wrap(f'<p class="MsoNormal">{span}{line or "&nbsp;"}<o:p></o:p></span></p>', 76)
            out.append("</div>")
    out += ["</div>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _render_gmail_html(blocks: list[tuple[str, str]]) -> str:
    """Gmail's HTML: no head, one ``div dir=ltr``, the quote in ``gmail_quote``."""
    out = ['<div dir="ltr">']
    for kind, value in blocks:
        escaped = html.escape(value, quote=False)
        if kind == "p":
            out += _wrap(f"<div>{escaped}</div><div><br></div>", 76)
        elif kind == "sig":
            out.append(
                '<div><span class="gmail_signature_prefix">-- </span><br><div dir="ltr" '
                'class="gmail_signature" data-smartmail="gmail_signature">'
            )
            out += [f"<div>{line}</div>" for line in escaped.split("\n")]
            out.append("</div></div>")
        elif kind == "table":
            out.append('<table style="border-collapse:collapse"><tbody>')
            for row in escaped.split("\n"):
                cells = "".join(f'<td style="padding:2px 8px">{cell}</td>' for cell in row.split("\t"))
                out += _wrap(f"<tr>{cells}</tr>", 76)
            out.append("</tbody></table><div><br></div>")
        elif kind == "attribution":
            out.append('</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">')
            out += _wrap(f"{escaped}<br></div>", 76)
        elif kind == "quote":
            out.append(
                '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
                'border-left:1px solid rgb(204,204,204);padding-left:1ex">'
            )
            for line in escaped.rstrip("\n").split("\n"):
                out += _wrap(f"{line}<br>", 76)
            out.append("</blockquote></div>")
    if not any(kind == "attribution" for kind, _ in blocks):
        out.append("</div>")
    return "\n".join(out) + "\n"


def _render_simple_html(blocks: list[tuple[str, str]], *, charset: str) -> str:
    """Thunderbird-like HTML: paragraphs, a ``moz-signature`` and a cited blockquote."""
    out = SIMPLE_HEAD.format(charset=charset).splitlines()
    for kind, value in blocks:
        escaped = html.escape(value, quote=False)
        if kind == "p":
            out += _wrap(f"    <p>{escaped}</p>", 76)
        elif kind == "sig":
            out.append('    <pre class="moz-signature" cols="72">-- ')
            out += escaped.split("\n")
            out.append("</pre>")
        elif kind == "table":
            out.append('    <table border="1" cellpadding="2" cellspacing="0">')
            for row in escaped.split("\n"):
                cells = "".join(f"<td>{cell}</td>" for cell in row.split("\t"))
                out += _wrap(f"      <tr>{cells}</tr>", 76)
            out.append("    </table>")
        elif kind == "attribution":
            out += _wrap(f'    <div class="moz-cite-prefix">{escaped}<br></div>', 76)
        elif kind == "quote":
            out.append('    <blockquote type="cite">')
            for line in escaped.rstrip("\n").split("\n"):
                out += _wrap(f"{line}<br>", 76)
            out.append("    </blockquote>")
    out += ["  </body>", "</html>"]
    return "\n".join(out) + "\n"


def _boundary(rng: random.Random, style: str) -> str:
    if style == "outlook":
        return f"_000_{rng.getrandbits(128):032X}_"
    return f"------------{rng.getrandbits(96):024x}"


def _encode_body(data: bytes, cte: str) -> bytes:
    """Body bytes in transfer encoding ``cte``, CRLF line ends; ``data`` is canonical (CRLF) text or bytes."""
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        # quopri wants LF line ends and gives LF back; the wire form is CRLF (RFC 2045 §6.7 rule 4).
        return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return data


def _text_part(subtype: str, text: str, charset: str, cte: str) -> bytes:
    data = text.replace("\n", "\r\n").encode(charset)
    header = f'Content-Type: text/{subtype}; charset="{charset}"\r\n'
    header += f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    return header.encode("ascii") + _encode_body(data, cte)


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    out = [f'Content-Type: multipart/{subtype};\r\n\tboundary="{boundary}"\r\n\r\n'.encode("ascii")]
    if subtype == "mixed":
        out.append(b"This is a multi-part message in MIME format.\r\n")
    for part in parts:
        out.append(f"\r\n--{boundary}\r\n".encode("ascii"))
        out.append(part)
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def _attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    if filename.isascii():
        params = f'; name="{filename}"', f'; filename="{filename}"'
    else:
        # RFC 2231 §4: non-ASCII parameter values are charset'lang'percent-encoded.
        encoded = "utf-8''" + urllib.parse.quote(filename, safe="")
        params = f";\r\n\tname*={encoded}", f";\r\n\tfilename*={encoded}"
    header = (
        f"Content-Type: {content_type}{params[0]}\r\n"
        f"Content-Disposition: attachment{params[1]}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return header.encode("ascii") + _encode_body(data, "base64")


def _make_attachment(rng: random.Random, language: Language) -> tuple[str, str, bytes]:
    filename = rng.choice(language.filenames)
    size = rng.randint(4000, 40000)
    if filename.endswith(".pdf"):
        return filename, "application/pdf", _pdf_like(rng, size)
    return filename, "image/png", _png_like(rng, size)


def _pdf_like(rng: random.Random, size: int) -> bytes:
    stream = rng.randbytes(size)
    head = (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>\nendobj\n"
        + f"4 0 obj\n<< /Length {size} /Filter /FlateDecode >>\nstream\n".encode("ascii")
    )
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n%%EOF\n"
    return head + stream + tail


def _png_like(rng: random.Random, size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = (640).to_bytes(4, "big") + (480).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", rng.randbytes(size))
        + chunk(b"IEND", b"")
    )


def _encoded_words(text: str, charset: str, encoding: int, header_name: str) -> str:
    """``text`` as RFC 2047 encoded words in the sender's charset, folded with CRLF; ASCII stays as it is."""
    if text.isascii():
        return text
    chosen = Charset(charset)
    chosen.header_encoding = encoding
    return Header(text, chosen, header_name=header_name).encode(linesep=CRLF, maxlinelen=76)


def _headers(
    rng: random.Random,
    *,
    sender: Sender,
    subject: str,
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
    date: datetime,
    to: str,
    has_attachment: bool,
) -> list[str]:
    language = sender.language
    local_date = date.astimezone(timezone(timedelta(hours=language.offset_hours)))
    domain = sender.address.split("@", 1)[1]
    transport = sender.mailer.transport
    lines = _transport_headers(
        rng, transport=transport, domain=domain, date=date, local_date=local_date, to=to
    )
    lines.append(f"Date: {format_datetime(local_date)}")
    if sender.bare_address:
        lines.append(f"From: {sender.address}")
    elif sender.name.isascii():
        lines.append(f"From: {formataddr((sender.name, sender.address))}")
    else:
        name = _encoded_words(sender.name, sender.charset, sender.header_encoding, "From")
        lines += f"From: {name} <{sender.address}>".split(CRLF)
    lines.append(f"To: {to}")
    # Clients keep the reply prefix in ASCII and encode only the original subject after it.
    prefix, topic = ("Re: ", subject[4:]) if subject.startswith("Re: ") else ("", subject)
    encoded_topic = _encoded_words(topic, sender.charset, sender.header_encoding, "Subject")
    lines += f"Subject: {prefix}{encoded_topic}".split(CRLF)
    if transport == "exchange":
        thread_topic = _encoded_words(topic, sender.charset, sender.header_encoding, "Thread-Topic")
        lines += f"Thread-Topic: {thread_topic}".split(CRLF)
        lines.append(f"Thread-Index: {_b64(rng, 22 + 5 * len(references))}")
    lines.append(f"Message-ID: {message_id}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
        lines.append("References: " + (CRLF + " ").join(references))
    if transport == "exchange":
        lines += _exchange_headers(
            rng, language=language, domain=domain, date=date, has_attachment=has_attachment
        )
    if sender.mailer.agent_header:
        lines.append("{}: {}".format(*sender.mailer.agent_header))
    lines.append(f"Content-Language: {language.code}")
    lines.append("MIME-Version: 1.0")
    return lines


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _fold(name: str, tokens: list[str]) -> list[str]:
    """One header folded at token boundaries before 78 characters (RFC 5322 §2.2.3)."""
    lines: list[str] = []
    line = f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > 76 and line != f"{name}:":
            lines.append(line)
            line = "\t" + token
        else:
            line += " " + token
    lines.append(line)
    return lines


def _chunks(value: str, size: int = 68) -> list[str]:
    return [value[start : start + size] for start in range(0, len(value), size)]


def _dkim(
    rng: random.Random, name: str, *, domain: str, selector: str, signed: str, timestamp: int
) -> list[str]:
    # Whitespace inside b= is ignored by verifiers (RFC 6376 §3.5), so signers fold the signature freely.
    signature = _chunks(_b64(rng, 256))
    tokens = [
        "v=1;",
        "a=rsa-sha256;",
        "c=relaxed/relaxed;",
        f"d={domain};",
        f"s={selector};",
        f"t={timestamp};",
        f"h={signed};",
        f"bh={_b64(rng, 32)};",
        "b=" + signature[0],
        *signature[1:],
    ]
    return _fold(name, tokens)


def _transport_headers(
    rng: random.Random, *, transport: str, domain: str, date: datetime, local_date: datetime, to: str
) -> list[str]:
    """Trace and authentication headers as the sender's path writes them, newest first (RFC 5321 §4.4)."""
    arrived = date + timedelta(seconds=rng.randint(1, 5))
    timestamp = int(date.timestamp())
    hop = rng.randint(1, 9)
    if transport == "gmail":
        relay = f"mail-ej1-f{rng.randint(10, 99)}.google.com"
    elif transport == "exchange":
        region = f"{rng.choice(('am', 'db', 'vi'))}{rng.randint(5, 8)}eur0{rng.randint(1, 5)}"
        relay = f"mail-{region}on2{rng.randint(100, 139)}.outbound.protection.outlook.com"
    else:
        relay = f"mail-out{hop}.{domain}"
    lines = [
        f"Received: from {relay} ({relay} [198.51.100.{rng.randint(2, 254)}])",
        f"\tby mx1.example.net (Postfix) with ESMTPS id {rng.getrandbits(40):010X}",
        f"\tfor <{to}>; {format_datetime(arrived)}",
    ]
    lines += _fold(
        "Authentication-Results",
        [
            "mx1.example.net;",
            f"dkim=pass (2048-bit key) header.d={domain} header.i=@{domain}",
            f"header.b={_b64(rng, 6)};",
            f"spf=pass (mx1.example.net: domain of {domain} designates",
            f"198.51.100.{rng.randint(2, 254)} as permitted sender) smtp.mailfrom={domain};",
            f"dmarc=pass (p=none dis=none) header.from={domain}",
        ],
    )
    selector = {"gmail": "20230601", "exchange": "selector1"}.get(transport, "default")
    if transport == "gmail":
        signed = "to:subject:message-id:date:from:mime-version:from:to:cc:subject:date:message-id:reply-to"
        lines += _dkim(
            rng, "DKIM-Signature", domain=domain, selector=selector, signed=signed, timestamp=timestamp
        )
        lines += _dkim(
            rng,
            "X-Google-DKIM-Signature",
            domain="1e100.net",
            selector=selector,
            signed=signed,
            timestamp=timestamp,
        )
        lines += _fold("X-Gm-Message-State", _chunks(_b64(rng, 72)))
        lines += _fold("X-Google-Smtp-Source", _chunks(_b64(rng, 72)))
        lines += [
            (
                f"X-Received: by 2002:a17:906:{rng.getrandbits(16):x}:b0:a44:{rng.getrandbits(16):x}:"
                f"{rng.getrandbits(16):x} with SMTP id {_b64(rng, 9).lower()}"
            ),
            f"\t{rng.getrandbits(20)}ejb.{rng.randint(10, 99)}.{timestamp}; {format_datetime(date)}",
        ]
    elif transport == "exchange":
        server = f"{_mailbox_server(rng, 'AM', 0)}.eurprd0{rng.randint(1, 9)}.prod.outlook.com"
        signed = "From:Date:Subject:Message-ID:Content-Type:MIME-Version:X-MS-Exchange-SenderADCheck"
        lines += [
            f"Received: from {server} (2603:10a6:20b:{rng.getrandbits(12):x}::{rng.getrandbits(8):x}) by",
            f"\t{relay.split('.')[0].upper()}.eurprd0{rng.randint(1, 9)}.prod.outlook.com",
            "\twith Microsoft SMTP Server",
            "\t(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id",
            f"\t15.20.7362.{rng.randint(10, 40)}; {format_datetime(date)}",
        ]
        seal = _chunks(_b64(rng, 256))
        lines += _fold(
            "ARC-Seal",
            [
                "i=1;",
                "a=rsa-sha256;",
                "s=arcselector9901;",
                "d=microsoft.com;",
                "cv=none;",
                "b=" + seal[0],
                *seal[1:],
            ],
        )
        lines += _dkim(
            rng,
            "ARC-Message-Signature",
            domain="microsoft.com",
            selector="arcselector9901",
            signed=signed,
            timestamp=timestamp,
        )
        lines += _fold(
            "ARC-Authentication-Results",
            [
                "i=1;",
                "mx.microsoft.com",
                "1;",
                "spf=pass",
                f"smtp.mailfrom={domain};",
                "dmarc=pass",
                "action=none",
                f"header.from={domain};",
                "dkim=pass",
                f"header.d={domain};",
                "arc=none",
            ],
        )
        lines += _dkim(
            rng, "DKIM-Signature", domain=domain, selector=selector, signed=signed, timestamp=timestamp
        )
    else:
        lines += [
            f"Received: from [192.168.{rng.randint(0, 9)}.{rng.randint(2, 254)}]",
            f"\t(unknown [203.0.113.{rng.randint(2, 254)}])",
            f"\tby mail-out{hop}.{domain} with ESMTPSA id {rng.getrandbits(32):08x};",
            f"\t{format_datetime(local_date)}",
        ]
        lines += _dkim(
            rng,
            "DKIM-Signature",
            domain=domain,
            selector=selector,
            signed="From:To:Subject:Date:Message-ID",
            timestamp=timestamp,
        )
    return lines


def _mailbox_server(rng: random.Random, prefix: str, low: int) -> str:
    return f"{prefix}{rng.randint(low, 9)}PR0{rng.randint(1, 9)}MB{rng.randint(1000, 9999)}"


def _exchange_headers(
    rng: random.Random, *, language: Language, domain: str, date: datetime, has_attachment: bool
) -> list[str]:
    """The X-MS-* block Exchange Online writes into every message it relays, a few KB of it."""
    locale = {"cs": "cs-CZ", "pl": "pl-PL", "uk": "uk-UA", "en": "en-GB"}[language.code]
    server = _mailbox_server(rng, "AM", 0)
    tenant = _uuid(rng)
    filters = [f"({rng.randint(1000000, 99999999999)})" for _ in range(rng.randint(20, 32))]
    arrived = date.strftime("%d %b %Y %H:%M:%S") + f".{rng.randint(1000, 9999)} (UTC)"
    lines = [
        f"Accept-Language: {locale}, en-US",
        f"X-MS-Has-Attach: {'yes' if has_attachment else ''}".rstrip(),
        "X-MS-TNEF-Correlator:",
        "x-ms-publictraffictype: Email",
        f"x-ms-traffictypediagnostic: {server}:EE_|{_mailbox_server(rng, 'DB', 1)}:EE_",
        f"x-ms-office365-filtering-correlation-id: {_uuid(rng)}",
        "x-ms-exchange-senderadcheck: 1",
        "x-ms-exchange-antispam-relay: 0",
        "x-microsoft-antispam: BCL:0;",
    ]
    lines += _fold("x-microsoft-antispam-message-info", _chunks(_b64(rng, rng.randint(900, 1500))))
    lines += _fold(
        "x-forefront-antispam-report",
        [
            f"CIP:255.255.255.255;CTRY:;LANG:{language.code};SCL:1;SRV:;IPV:NLI;SFV:NSPM;",
            f"H:{server}.eurprd07.prod.outlook.com;",
        ]
        + ["PTR:;CAT:NONE;SFS:" + filters[0]]
        + filters[1:]
        + ["DIR:OUT;SFP:1102;"],
    )
    lines.append("x-ms-exchange-antispam-messagedata-chunkcount: 1")
    lines += _fold("x-ms-exchange-antispam-messagedata-0", _chunks(_b64(rng, rng.randint(1200, 2400))))
    lines += [
        f"X-OriginatorOrg: {domain}",
        "X-MS-Exchange-CrossTenant-AuthAs: Internal",
        f"X-MS-Exchange-CrossTenant-AuthSource: {server}.eurprd07.prod.outlook.com",
        f"X-MS-Exchange-CrossTenant-Network-Message-Id: {_uuid(rng)}",
        f"X-MS-Exchange-CrossTenant-originalarrivaltime: {arrived}",
        "X-MS-Exchange-CrossTenant-fromentityheader: Hosted",
        f"X-MS-Exchange-CrossTenant-id: {tenant}",
        "X-MS-Exchange-CrossTenant-mailboxtype: HOSTED",
        f"X-MS-Exchange-CrossTenant-userprincipalname: {_b64(rng, 48)}",
        f"X-MS-Exchange-Transport-CrossTenantHeadersStamped: {_mailbox_server(rng, 'DB', 1)}",
    ]
    return lines


def check_corpus(mails: list[CorpusMail]) -> dict[str, object]:
    """Parse every mail back with ``policy.default`` and compare it with what it was made from.

    Raises AssertionError on the first mail that has a defect, a wrong header, or a body that does not decode
    to its original text; returns the corpus' shape (shares, sizes) otherwise.
    """
    import email
    import email.policy
    import statistics

    by_id = {mail.message_id: mail for mail in mails}
    shares: dict[str, int] = {}
    for mail in mails:
        message = email.message_from_bytes(mail.raw, policy=email.policy.default)
        defects = [defect for part in message.walk() for defect in part.defects]
        assert not defects, (mail.index, defects)
        assert message["Message-ID"] == mail.message_id, mail.index
        assert str(message["Subject"]) == mail.subject, mail.index
        address = message["From"].addresses[0]
        assert address.addr_spec == mail.sender.address, mail.index
        # CPython 3.11 puts a space between adjacent encoded-words in a display name; compare without spaces.
        assert mail.sender.bare_address or address.display_name.replace(" ", "") == mail.sender.name.replace(
            " ", ""
        ), mail.index
        plain = message.get_body(("plain",))
        assert plain.get_content().replace("\r\n", "\n") == mail.text, mail.index
        if mail.html is not None:
            assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == mail.html, mail.index
        attachments = list(message.iter_attachments())
        if mail.attachment is not None:
            assert len(attachments) == 1 and attachments[0].get_filename() == mail.attachment[0], mail.index
            assert attachments[0].get_content() == mail.attachment[2], mail.index
        else:
            assert not attachments, mail.index
        if mail.in_reply_to is not None:
            parent = by_id[mail.in_reply_to]
            assert parent.index < mail.index and parent.sender is mail.sender, mail.index
            assert message["In-Reply-To"] == mail.in_reply_to, mail.index
        for key in (
            f"language_{mail.language}",
            f"charset_{mail.charset}",
            f"cte_{mail.transfer_encoding}",
            "reply" if mail.in_reply_to else None,
            "alternative" if mail.html is not None else None,
            "attachment" if mail.attachment is not None else None,
        ):
            if key:
                shares[key] = shares.get(key, 0) + 1
    sizes = [len(mail.raw) for mail in mails]
    return {
        "n": len(mails),
        "senders": len({mail.sender.address for mail in mails}),
        "mean_kb": round(statistics.mean(sizes) / 1024, 2) if sizes else 0,
        "median_kb": round(statistics.median(sizes) / 1024, 2) if sizes else 0,
        "max_kb": round(max(sizes, default=0) / 1024, 2),
        "shares": {key: round(count / len(mails), 3) for key, count in sorted(shares.items())},
    }


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m bench.corpus", description="Generate and check a corpus."
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    print(
        json.dumps(
            {
                "bench": "corpus",
                "seed": arguments.seed,
                **check_corpus(generate_mails(arguments.n, arguments.seed)),
            }
        )
    )
