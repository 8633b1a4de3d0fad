"""Word lists for realistic research: companies, sectors, regions, note kinds.

Everything here is data. Generation draws from it with a seeded ``random.Random`` so that a given
seed always yields the same documents.
"""

from __future__ import annotations

COMPANY_STEMS = [
    "Northwind", "Apex", "Bluewater", "Cedar", "Crescent", "Summit", "Harbor", "Ironbridge",
    "Keystone", "Lakeshore", "Meridian", "Norbridge", "Oakmont", "Pinnacle", "Quarry", "Redwood",
    "Silverline", "Tidewater", "Upland", "Vantage", "Westfield", "Yellowstone", "Zenith", "Aurora",
    "Beacon", "Cobalt", "Delta", "Evergreen", "Falcon", "Granite", "Horizon", "Ivory", "Juniper",
    "Kestrel", "Lumen", "Monarch", "Nimbus", "Orion", "Polaris", "Quantum", "Riverstone",
    "Sterling", "Titan", "Unity", "Vertex", "Willow", "Xenon", "Atlas", "Borealis", "Cascade",
]  # fmt: skip

# (suffix, sector) pairs: the suffix makes the name sound like the sector it is filed under.
COMPANY_SUFFIXES = [
    ("Semiconductor", "Information Technology"), ("Software", "Information Technology"),
    ("Networks", "Communication Services"), ("Media", "Communication Services"),
    ("Therapeutics", "Health Care"), ("Biosciences", "Health Care"), ("Medical", "Health Care"),
    ("Energy", "Energy"), ("Petroleum", "Energy"), ("Renewables", "Utilities"),
    ("Power", "Utilities"), ("Bancorp", "Financials"), ("Capital", "Financials"),
    ("Insurance", "Financials"), ("Logistics", "Industrials"), ("Aerospace", "Industrials"),
    ("Industries", "Industrials"), ("Materials", "Materials"), ("Chemicals", "Materials"),
    ("Mining", "Materials"), ("Foods", "Consumer Staples"), ("Brands", "Consumer Staples"),
    ("Retail", "Consumer Discretionary"), ("Motors", "Consumer Discretionary"),
    ("Hotels", "Consumer Discretionary"), ("Realty", "Real Estate"), ("REIT", "Real Estate"),
]  # fmt: skip

SECTORS = sorted({sector for _, sector in COMPANY_SUFFIXES})

REGIONS = ["North America", "Europe", "United Kingdom", "Japan", "Asia ex-Japan", "Latin America"]

CITIES = [
    "New York", "Boston", "Chicago", "San Francisco", "Austin", "London", "Frankfurt", "Paris",
    "Zurich", "Tokyo", "Singapore", "Hong Kong", "Sydney", "Toronto", "São Paulo", "Stockholm",
]  # fmt: skip

MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip

RATINGS = ["Buy", "Overweight", "Hold", "Underweight", "Sell"]

# (content type name, title templates). Placeholders: company, ticker, sector, region, quarter,
# year, month, city.
NOTE_KINDS: dict[str, list[str]] = {
    "note": [
        "{company} ({ticker}): {quarter} {year} earnings call notes",
        "Thoughts on {company} after {quarter} results",
        "{company}: initiation of coverage",
        "{sector} sector review, {month} {year}",
        "{company}: thesis update",
        "Short idea: {company} ({ticker})",
        "{region} macro outlook for {year}",
        "Channel checks on {company} in {region}",
    ],
    "meeting": [
        "Meeting with {company} management",
        "{company} site visit, {city}",
        "{company} investor day takeaways",
        "Dinner with the {company} CFO, {city}",
        "{sector} conference, {city}: meeting with {company}",
    ],
    "call": [
        "Expert call: {sector} supply chain",
        "Expert call on {company}'s competitive position",
        "Call with former {company} sales director",
        "Industry call: {sector} pricing in {region}",
    ],
    "file": [
        "{company} {quarter} {year} results presentation",
        "{company} annual report {year}",
        "Broker report: {company} ({ticker})",
        "{sector} monthly data pack, {month} {year}",
    ],
    "model": [
        "{company} ({ticker}) model, {quarter} {year}",
        "{sector} comps table, {month} {year}",
    ],
}

# Relative frequency of each content type among generated documents.
KIND_WEIGHTS = {"note": 55, "meeting": 20, "call": 10, "file": 10, "model": 5}

EDIT_SUFFIXES = ["(updated)", "(revised)", "v2", "(corrected figures)", "(post-call addendum)"]

FIRST_NAMES = [
    "Amelia", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas",
    "Keiko", "Liam", "Maya", "Nikhil", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tara",
]  # fmt: skip
LAST_NAMES = [
    "Andersen", "Baker", "Chen", "Dubois", "Evans", "Fischer", "García", "Hughes", "Ito", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Nakamura", "O'Brien", "Patel", "Rossi", "Schmidt", "Tanaka",
]  # fmt: skip
PROJECT_STAGES = ["Idea", "Research", "Due diligence", "Investment committee", "Invested", "Exited"]
PROJECT_KINDS = ["Initiation", "Deep dive", "Pair trade", "Activist review", "Thesis check"]

# Paragraphs of note bodies (HTML). Placeholders as in NOTE_KINDS.
NOTE_PARAGRAPHS = [
    "<p>Management reiterated guidance for {year}; margins in {region} held up better than "
    "feared.</p>",
    "<p>Key debate: whether {company} can keep pricing power as {sector} demand slows.</p>",
    "<ul><li>Revenue in line</li><li>Free cash flow ahead of consensus</li>"
    "<li>Buyback extended</li></ul>",
    "<p>We spoke to two former employees in {city}; both describe <strong>disciplined</strong> "
    "capital allocation.</p>",
    "<p>Risks: currency, a slower {quarter}, and competition from new entrants.</p>",
    '<p>See the <a href="https://example.com/{ticker}">model</a> for the updated estimates.</p>',
]
# Content a careless editor pasted in: the partner's sanitiser must drop it (docs/bipsync.md).
UNSAFE_PARAGRAPHS = [
    "<p>Pasted from the broker portal:</p><script>alert('{ticker}')</script>",
    '<p onclick="steal()">Click for the full table</p><img src="x" onerror="steal()">',
]
