"""Deterministic generator for the demo product catalog.

Writes ``items.csv`` and ``reviews.csv`` next to this file. Every item comes from
a hand-written *variant* (model name, product phrase, base price and one
distinguishing detail) combined with features, uses, audiences and closing
lines drawn from per-category vocabularies, so items of the same type still
read differently and each one is semantically distinct for embedding search.

Run with ``python data/demo/generate.py``; the output is identical on every run.
"""

from __future__ import annotations

import csv
import random
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

SEED = 42
OUT_DIR = Path(__file__).resolve().parent
START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)

# Catalog vocabulary, one product per line. Syntax:
#   == <category> <SKU prefix>                 starts a category
#   brands: / audiences: / closers: a|b|c      category vocabulary (lines may repeat)
#   -- <review aspects> :: <uses>              starts a product type; aspects are singular
#                                              nouns, uses are phrases that follow "for"
#   + feature|feature                          noun phrases true for every variant of the type
# The data lines are deliberately long (this file is excluded from ruff in pyproject.toml).
#   <model> | <product phrase> | <base USD price> | <distinguishing detail>
# For books the model is the title and the "brand" is the publisher.
CATALOG_TEXT = """
== kitchen KT
brands: Copperleaf|Hearth & Hollow|Marlow Kitchenworks|Saltbox|Ferro Casa|Bramblewood|Kinsei|Northgate Home
audiences: home cooks|busy families|small-apartment kitchens|serious bakers|new homeowners
closers: Backed by a {years}-year limited warranty against defects.
closers: Check the care card in the box for cleaning guidance.|It ships in plastic-free, recyclable packaging.
closers: Returns are free within 30 days if it doesn't suit your kitchen.
-- edge retention|balance|handle grip|sharpness :: weeknight vegetable prep|holiday cooking|Sunday batch cooking
+ a full-tang build for balance|an ergonomic pakkawood handle|a finger-protecting bolster|a slim magnetic blade guard
+ a satin-finished blade that resists staining
Meister 8 Chef's Knife | 8-inch German-style chef's knife | 89 | a forged X50CrMoV15 stainless blade hardened to 57 HRC
Hana 7 Santoku Knife | 7-inch hollow-edge santoku knife | 74 | granton dimples that stop sliced potatoes from clinging to the blade
Crumb 10 Bread Knife | 10-inch serrated bread knife | 45 | deep scalloped teeth that slice crusty sourdough without crushing the crumb
Sora 67 Gyuto | Damascus-clad Japanese gyuto | 189 | a VG-10 core wrapped in 67 layers of rippled steel at 60 HRC
Petite 3.5 Paring Knife | 3.5-inch paring knife | 29 | a nimble pointed tip for hulling strawberries and peeling apples
-- heat distribution|cleanup|handle|weight :: one-pan weeknight dinners|cooking for a family of four|everyday stovetop cooking
+ an oven-safe build rated to 260 °C|a helper handle for two-handed lifting|a flared rim for drip-free pouring
+ compatibility with induction, gas and electric cooktops|a generous cooking surface
Ironclad 12 Skillet | 12-inch pre-seasoned cast iron skillet | 44 | a flaxseed-oil seasoning that only improves with every sear
Glide 10 Frying Pan | 10-inch ceramic nonstick frying pan | 39 | a PFAS-free ceramic coating that releases eggs with barely any butter
Tri-Ply 3.5 Qt Sauté Pan | 3.5-quart five-ply stainless sauté pan | 129 | an aluminum core sandwiched between stainless layers for even browning
Ember 14 Wok | 14-inch flat-bottom carbon steel wok | 59 | a thin 1.6 mm carbon steel body that heats fast for smoky stir-fries
Maison 5.5 Qt Dutch Oven | 5.5-quart enameled cast iron Dutch oven | 149 | a glossy enamel interior and a self-basting lid for slow braises
-- flavor|ease of cleaning|brewing speed|build quality :: slow weekend mornings|the daily pre-work rush|hosting brunch
+ a compact footprint that fits under wall cabinets|an automatic shut-off|a brushed stainless housing
+ a cord-storage base|a descaling reminder
Crema Duo Espresso Machine | semi-automatic espresso machine | 449 | a 15-bar pump, PID temperature control and a steam wand for silky microfoam
Morning Batch 12-Cup Coffee Maker | 12-cup programmable drip coffee maker | 99 | a double-wall thermal carafe and a 24-hour brew timer
Grindwell 40 Burr Grinder | conical burr coffee grinder | 139 | 40 grind settings that run from fine espresso to coarse French press
Pourline Gooseneck Kettle | electric gooseneck kettle | 79 | a precision spout and temperature hold anywhere from 40 to 100 °C for pour-over
Podline Capsule Coffee Machine | single-serve capsule coffee machine | 129 | a 25-second heat-up and support for recyclable aluminum pods
-- motor power|noise level|cleanup|attachment quality :: healthy breakfasts|everyday kitchen tasks|weekend cooking projects
+ dishwasher-safe removable parts|suction feet that keep it steady on the counter|overload protection on the motor
+ a pulse setting for fine control
Vortex 1400 Blender | 1400-watt high-speed blender | 169 | a 64-ounce Tritan jar and hardened steel blades that pulverize ice
Batchmate 9-Cup Food Processor | 9-cup food processor | 119 | slicing, shredding and dough discs plus an extra-wide feed chute
Bakehaus 5.5 Qt Stand Mixer | 5.5-quart tilt-head stand mixer | 299 | a 10-speed direct-drive motor with a dough hook, flat beater and wire whisk
Smoothie Go Personal Blender | personal single-serve blender | 49 | two 600 ml travel cups that double as drinking bottles
-- cooking result|capacity|cleanup|preset program :: hands-off weeknight meals|meal prep for the week|feeding a crowd
+ dishwasher-safe removable parts|a keep-warm mode|a delay-start timer|a clear digital display|cool-touch handles
Crispwell 6 Qt Air Fryer | 6-quart basket air fryer | 109 | a 1700-watt convection fan and a nonstick crisper plate for fries and wings
Simmer 7 Qt Slow Cooker | 7-quart programmable slow cooker | 59 | a stoneware crock that goes from fridge to base to table
Kome 5.5-Cup Rice Cooker | 5.5-cup induction rice cooker | 179 | fuzzy-logic cooking with settings for sushi rice, brown rice and congee
Pressure Pro 8 Qt Multicooker | 8-quart electric pressure multicooker | 129 | pressure cooking, sautéing, steaming and yogurt modes in a single pot
-- knife friendliness|stability|size|finish :: carving roasts|serving cheese and charcuterie|daily chopping
+ a deep juice groove around the edge|non-slip rubber feet|recessed side handles
+ a reversible design with two work surfaces
Endgrain 18 Walnut Butcher Block | end-grain walnut butcher block | 129 | a 4.5 cm thick checkerboard of self-healing walnut end grain
Everyday Bamboo Board Set | set of three bamboo cutting boards | 34 | nested small, medium and large boards for bread, cheese and vegetables
Hygiene Color-Coded Board Set | set of four color-coded plastic cutting boards | 39 | red, green, blue and yellow boards that keep raw meat and produce apart
-- lid seal|stackability|stain resistance|durability :: meal-prepped lunches|a tidy pantry|cutting down on food waste
+ lids with silicone gaskets|stackable shapes that save shelf space|dishwasher-safe components
+ clear walls so you can see what's left
Seal & Stack 18-Piece Glass Containers | 18-piece glass meal-prep container set | 49 | leakproof locking lids and oven-safe borosilicate bases
Pantry Clear 10 Canister Set | 10-piece airtight pantry canister set | 44 | square BPA-free canisters with flip-lock lids for flour, rice and pasta
Stasis Silicone Bag Set | set of six reusable silicone food bags | 36 | pinch-press seals that go from freezer to sous-vide bath
Herb Keeper Produce Saver | herb keeper produce saver | 24 | a water reservoir that keeps cilantro and basil fresh for up to three weeks
-- browning|release|sturdiness|cleanup :: holiday baking|birthday cakes|weekend baking projects
+ a heavy-gauge aluminized steel body|rolled edges that resist warping|a nonstick finish free of PFOA
+ wide handles that are easy to grip with oven mitts
Golden Crust Half Sheet Pan | half-sheet baking pan | 24 | an 18 by 13 inch surface with a micro-textured finish for roasted vegetables
Springform 9 Cheesecake Pan | 9-inch leakproof springform pan | 27 | a latch-release ring and a glass base for serving cheesecake straight to the table
Bundt Heritage 10-Cup Pan | 10-cup fluted bundt pan | 34 | a cast aluminum body with deep sculpted ridges
Loaf Duo 9x5 Bread Pans | pair of 9x5 inch loaf pans | 29 | corrugated bottoms that promote airflow for evenly baked sandwich loaves
Muffin Classic 12-Cup Pan | 12-cup muffin tin | 22 | wide rims for lifting and cups that release muffins cleanly
-- accuracy|display|battery life|build quality :: precise baking|grilling season|juggling a holiday dinner
+ a bright backlit display|long battery life|an auto-off to save power|a slim body that tucks into a drawer
Probe Fast Instant-Read Thermometer | instant-read digital meat thermometer | 29 | a folding probe that reads in two seconds with ±0.5 °C accuracy
Gramsmith 5 kg Kitchen Scale | digital kitchen scale | 24 | 1-gram resolution up to 5 kg and a tare button for baking by weight
Smokeline Wireless Meat Thermometer | dual-probe wireless meat thermometer | 79 | two probes and a Bluetooth app that alerts you when the roast hits its target
Tick Triple Kitchen Timer | triple-channel digital kitchen timer | 19 | three independent countdowns for juggling several side dishes at once
Leveling Digital Measuring Spoon | digital measuring spoon | 15 | a 0.1-gram resolution for weighing spices, yeast and baking soda
== outdoor OD
brands: Alder & Finch|Cedarline|Ridgeback Supply|Northfell|Tamarack Gear|Basin & Range|Kestrel Peak|Wildwater Outfitters
audiences: weekend backpackers|car campers|thru-hikers|families who love the outdoors|scout leaders
closers: Backed by a {years}-year warranty and a repair program.|Made with recycled fabrics where possible.
closers: Rinse with fresh water and dry fully before storing.|Every unit is field-tested by our guides.
-- rain protection|setup|packed weight|ventilation :: weekend getaways|longer expeditions|trips with friends
+ fully taped seams|a bathtub-style floor|color-coded poles and clips|mesh panels for airflow|interior storage pockets
+ reflective guy lines
Trailhead UL2 Backpacking Tent | ultralight two-person backpacking tent | 389 | a 1.3 kg trail weight, a 20D silnylon rainfly and room for two sleepers
Basecamp 6 Family Tent | six-person family car-camping tent | 329 | a 2-metre peak height, a room divider and a large front porch
Summit 4S Mountaineering Tent | four-season mountaineering tent | 649 | snow-load-rated aluminum poles, a snow skirt and a storm-proof dome shape
Solo Ridge Trekking Pole Shelter | single-person trekking-pole shelter | 279 | a 740 g pyramid design that pitches with your own hiking poles
Overland Rooftop Tent | hard-shell rooftop tent | 2199 | a clamshell lid that opens in under a minute on a vehicle roof rack
-- warmth|packability|zipper|comfort :: cold nights under the stars|campground weekends|longer trips
+ a draft collar around the shoulders|an anti-snag zipper|a compression stuff sack|a stash pocket for a phone
+ a contoured hood
Ember 20 Down Sleeping Bag | 800-fill down mummy sleeping bag rated to -7 °C | 349 | hydrophobic goose down and a 900 g packed weight
Cabin Rectangle Sleeping Bag | roomy rectangular synthetic sleeping bag | 89 | a brushed flannel lining and a zip that opens it into a full quilt
Little Camper Kids Sleeping Bag | kids' sleeping bag | 49 | a 150 cm length sized for children and a glow-in-the-dark zipper pull
Polar Expedition Sleeping Bag | expedition sleeping bag rated to -30 °C | 699 | 1.2 kg of 850-fill down inside a waterproof shell
-- comfort|noise level|inflation|durability :: restful nights on the trail|long trips|car camping
+ a fast one-way inflation valve|an included pump sack|a non-slip top surface|a field repair kit
AirLoft 4.2 Insulated Sleeping Pad | insulated inflatable sleeping pad | 169 | a 7 cm thickness and an R-value of 4.2 for three-season warmth
Dreamcamp Double Self-Inflating Mat | double-width self-inflating camping mat | 159 | open-cell foam that inflates itself and room for two sleepers
Featherpad UL Sleeping Pad | ultralight mummy-shaped air pad | 189 | a 340 g weight that rolls up to the size of a water bottle
-- fit|hip belt|pocket layout|durability :: day hikes|multi-day treks|travel
+ an adjustable torso length|a padded hip belt with zip pockets|a hydration sleeve|side stretch pockets for bottles
+ an integrated rain cover
Longtrail 65 Trekking Pack | 65-litre trekking backpack | 269 | a suspended mesh back panel and load lifters for heavy multi-day loads
Daybreak 24 Daypack | 24-litre hiking daypack | 109 | a trampoline mesh back that keeps sweat down on hot ascents
Frameless 40 Ultralight Pack | 40-litre frameless ultralight pack | 199 | a 620 g Dyneema composite body for fast-and-light thru-hikes
Little Trekker Child Carrier | child-carrier hiking backpack | 299 | a padded cockpit with a sunshade for toddlers up to 18 kg
-- boil time|wind performance|simmer control|packed size :: trail breakfasts|group campsite dinners|hot drinks on summit days
+ a stable fold-out base|a storage sack|simple, tool-free setup|durable stainless and aluminum parts
Jetflame Integrated Stove System | integrated canister stove system | 149 | a heat-exchanger pot that boils 0.5 L of water in about 100 seconds
Pocket Burner Ultralight Stove | ultralight canister stove | 49 | a 78 g titanium burner that screws onto any isobutane canister
Campkitchen Two-Burner Stove | two-burner propane camp stove | 139 | two 10,000 BTU burners with windscreens for car-camping breakfasts
Twig Fire Wood Stove | wood-burning backpacking stove | 69 | a double-wall gasifier design that burns twigs and pine cones
-- flow rate|water taste|ease of cleaning|weight :: backcountry trips|international travel|emergency kits
+ a simple field-cleaning routine|a compact stuff sack|BPA-free components|a clear replacement indicator
Clearstream Squeeze Filter | squeeze-style water filter | 39 | a 0.1-micron hollow-fibre element rated for 380,000 litres
Basecamp 6L Gravity Filter | six-litre gravity water filter | 119 | a hang-and-forget reservoir that filters 1.7 litres per minute for group camps
Lumen UV Purifier Pen | UV-C water purifier pen | 89 | ultraviolet light that neutralizes viruses and bacteria in a litre in 90 seconds
Trailsip Filter Bottle | filter water bottle | 44 | a built-in carbon and hollow-fibre straw so you can drink straight from streams
-- brightness|battery life|beam pattern|comfort :: night hikes|camp chores after dark|power outages
+ USB-C recharging|a red-light mode that preserves night vision|an IPX4 water-resistance rating
+ a lockout mode that prevents accidental switching
Beacon 400 Headlamp | 400-lumen rechargeable headlamp | 49 | a 68 g body with spot and flood beams and a tilting lamp head
Nightrun Running Headlamp | running headlamp | 59 | a bounce-free rear battery pack and a reflective strap for pre-dawn runs
Glowhouse Camp Lantern | collapsible LED camp lantern | 39 | a 360-degree diffuse glow that lights a whole picnic table
Tripline Solar String Lights | solar-charged camp string lights | 29 | a five-metre strand of warm LEDs that charges on a backpack strap by day
-- comfort|stability|setup|packed size :: festivals|lazy lakeside afternoons|evenings around the campfire
+ a carry bag with a shoulder strap|quick, tool-free setup|weather-resistant materials|a 150 kg load rating
Packlite Camp Chair | ultralight backpacking camp chair | 119 | a 900 g aluminum frame that folds to the size of a water bottle
Fireside Rocker Camp Chair | rocking camp chair | 99 | a spring-loaded rocking base and padded armrests
Skyloop Bug-Net Hammock | camping hammock with integrated bug net | 79 | ripstop nylon, a zip-off mosquito net and tree-friendly straps
Roll-Top Aluminum Camp Table | roll-top aluminum camp table | 69 | slatted aluminum panels that roll up into a compact carry bag
-- grip|locking mechanism|weight|sturdiness :: steep descents|long-distance hikes|winter snowshoeing
+ interchangeable snow baskets|carbide tips with rubber covers|padded wrist straps
+ foam grip extensions for steep traverses
Carbon Z Folding Trekking Poles | pair of folding carbon trekking poles | 159 | three-section Z-fold shafts that weigh 290 g per pair
Allterrain Trekking Poles | pair of telescoping aluminum trekking poles | 69 | flick-lock adjustment from 105 to 135 cm and cork grips
-- waterproofing|breathability|fit|hood :: wet hiking seasons|city commutes|travel
+ fully taped seams|adjustable cuffs|water-resistant zippers|a helmet-compatible hood
Stormline 3L Rain Shell | three-layer waterproof rain shell | 279 | a 20,000 mm waterproof membrane and pit zips for venting on climbs
Packaway Rain Jacket | packable emergency rain jacket | 79 | a 210 g weight that stuffs into its own chest pocket
-- reliability|size|ease of use|durability :: solo hikes|remote backcountry routes|an emergency kit in the car
+ a bright orange finish that's easy to spot|a lanyard attachment point|a water-resistant build
+ a compact, pocketable size
Waypoint Satellite Messenger | satellite messenger with SOS | 349 | two-way texting via satellite and an SOS button that works beyond cell coverage
Declination Baseplate Compass | baseplate compass with sighting mirror | 49 | a global needle and adjustable declination for map-and-compass navigation
Trailside First-Aid Kit | ultralight first-aid kit | 34 | blister care, wound closure strips and a trauma pad in a 180 g pouch
Halo Emergency Bivy | reflective emergency bivy sack | 39 | a heat-reflective lining that keeps you warm through an unplanned night out
== electronics EL
brands: Voltaire|Lumora|Kinetix Audio|Parallax|Brightwave|Nimbus Labs|Hexa|Solenne
audiences: commuters|students|frequent travelers|gadget fans|families
closers: Covered by a {years}-year manufacturer warranty.|Firmware updates are delivered free through the app.
closers: The box includes a quick-start guide and a USB-C cable.|Packaging is 100% recyclable cardboard.
-- sound quality|comfort|battery life|build quality :: long-haul flights|listening at home|quiet time with music
+ plush memory-foam ear cushions|a foldable frame for travel|a hard-shell carrying case
+ a detachable cable for wired listening
Quietude ANC Over-Ear Headphones | noise-cancelling wireless over-ear headphones | 299 | adaptive active noise cancellation and 40 hours of battery life
Studio M50 Monitor Headphones | closed-back studio monitor headphones | 149 | 45 mm drivers tuned flat for mixing and tracking vocals
Openair 600 Audiophile Headphones | open-back audiophile headphones | 349 | planar magnetic drivers and a wide, speaker-like soundstage
Kidsafe 85 Kids Headphones | volume-limited kids' headphones | 29 | an 85 dB volume cap that protects young ears
-- fit|sound quality|battery life|call quality :: the daily commute|travel days|everyday listening
+ USB-C fast charging in the case|touch controls|multipoint Bluetooth pairing|three sizes of silicone tips
Stride Sport Earbuds | sweatproof true wireless sport earbuds | 129 | secure ear hooks and an IPX7 rating for sweaty workouts
Hush Pro ANC Earbuds | noise-cancelling true wireless earbuds | 199 | hybrid noise cancellation and a transparency mode for hearing announcements
Doze Sleep Earbuds | low-profile sleep earbuds | 149 | a flush fit for side sleepers and built-in white noise tracks
-- bass|volume|battery life|durability :: music around the house|gatherings with friends|everyday listening
+ stereo pairing with a second speaker|USB-C charging|a built-in microphone for calls|a rugged fabric grille
Boombox Go Waterproof Speaker | waterproof portable Bluetooth speaker | 99 | an IP67 rating that lets it float in the pool and 20 hours of playtime
Roomfill 360 Smart Speaker | Wi-Fi smart speaker with voice assistant | 179 | 360-degree sound and multi-room playback across the house
Pocket Mini Clip Speaker | palm-sized clip-on speaker | 39 | a carabiner clip for hanging it from a backpack strap
-- charging speed|size|heat management|build quality :: travel|keeping a desk tidy|off-grid weekends
+ overheat and surge protection|a foldable plug|LED charge indicators|a braided USB-C cable
Volt 65 GaN Charger | 65-watt GaN USB-C wall charger | 49 | three ports that charge a laptop, tablet and phone at once
Powerhouse 20K Power Bank | 20,000 mAh portable power bank | 59 | enough capacity to recharge a phone four times on a long trip
Dock Trio Wireless Charging Stand | 3-in-1 wireless charging stand | 79 | pads for a phone, a watch and earbuds on one nightstand base
Basecamp 500 Power Station | 500 Wh portable power station | 449 | household AC outlets and a solar input that keep a camping fridge or CPAP running off-grid
Trailpower 28W Solar Charger | foldable 28-watt solar charger | 79 | high-efficiency cells that charge a phone directly from the sun
-- setup|app|reliability|voice control :: a smarter home|saving energy|peace of mind while away
+ compatibility with Alexa, Google Home and Apple Home|a free companion app|Matter support
+ over-the-air firmware updates
Halo Smart Bulb 4-Pack | set of four color-changing smart bulbs | 49 | 16 million colors and schedules that fade up like a sunrise
Sentry 2K Video Doorbell | 2K video doorbell | 129 | head-to-toe video and package detection alerts
Thermo Smart Thermostat | learning smart thermostat | 199 | room sensors that balance hot and cold spots and monthly energy reports
Plugmate Smart Plug 2-Pack | pair of smart plugs with energy monitoring | 29 | per-outlet power tracking and timers for lamps and fans
Watchpost Pet Camera | indoor pet camera with treat tosser | 149 | 1080p video, two-way audio and a treat launcher you control from your phone
Clearair Smart Air Purifier | smart HEPA air purifier | 219 | a true HEPA filter and live air-quality readings in the app
-- battery life|accuracy|comfort|app :: everyday wellness|staying active through the week|building healthier routines
+ sleep tracking|water resistance to 50 metres|an optical heart-rate sensor|a swappable strap
Pulse 5 Fitness Tracker | slim fitness tracker band | 79 | a 14-day battery and automatic workout detection
Apex GPS Running Watch | GPS multisport running watch | 299 | dual-frequency GPS and training-load insights for race preparation
Classic Hybrid Smartwatch | analog hybrid smartwatch | 189 | real watch hands over a hidden e-ink display for notifications
Kids Locator Smartwatch | kids' GPS smartwatch with calling | 129 | live location sharing and a parent-approved contact list
Aura Smart Ring | titanium smart ring | 299 | screenless sleep-stage and readiness tracking in a 4 g band
-- image quality|stabilization|battery life|low-light performance :: road trips|outdoor adventures|documenting the unexpected
+ a microSD card slot|USB-C power|a free companion app|a wide-angle lens
Summit 4K Action Camera | waterproof 4K action camera | 249 | electronic image stabilization and 10 m waterproofing without a housing
Roadwitness Dual Dash Cam | front-and-rear dash cam | 139 | loop recording and a G-sensor that locks footage after a collision
Wildeye Trail Camera | motion-activated trail camera | 119 | no-glow infrared night vision for photographing wildlife after dark
Skylark Mini Drone | 249-gram folding camera drone | 449 | a 4K gimbal camera and 30 minutes of flight time
-- screen|battery life|weight|store selection :: bedtime reading|commutes|beach vacations
+ weeks of battery life|USB-C charging|an adjustable warm light|support for EPUB and PDF files
Pageturn 7 E-Reader | waterproof 7-inch e-reader | 149 | a 300 ppi glare-free screen and a warm front light for reading in bed
Inkpad 10 Writing Tablet | 10-inch e-ink writing tablet | 399 | a battery-free stylus that feels like pen on paper for handwritten notes
Colorleaf Color E-Reader | color e-ink e-reader | 219 | a color e-paper screen that shows comics and cookbook photos
-- performance|setup|remote|value :: movie nights|streaming sports|late-night TV
+ simple guided setup|a slim backlit remote|HDMI and optical connectivity|automatic firmware updates
Stream 4K Streaming Stick | 4K HDR streaming stick | 49 | Dolby Vision support and a voice remote
Cinema Bar 3.1 Soundbar | 3.1-channel soundbar with wireless subwoofer | 399 | a dedicated center channel that makes movie dialogue crisp
Lumen 120 Mini Projector | portable mini projector | 299 | a 120-inch picture from a palm-sized body with a built-in battery
Airwave Wireless TV Headphones | wireless TV headphones with charging dock | 89 | a dialogue boost mode that makes voices clearer for listeners with hearing loss
-- responsiveness|comfort|build quality|battery life :: competitive gaming|long weekend sessions|couch co-op
+ USB-C charging|low-latency 2.4 GHz wireless|compatibility with PC and consoles|customizable RGB lighting
Arena Pro Wireless Controller | wireless game controller with back paddles | 69 | hall-effect sticks that won't drift and remappable rear paddles
Arena 7.1 Gaming Headset | 7.1 surround gaming headset | 99 | a detachable boom mic and positional audio for hearing footsteps
Racer Pro Steering Wheel | force-feedback racing wheel with pedals | 249 | a 900-degree rotation wheel and a three-pedal set for sim racing
== home_office HO
brands: Oakridge Works|Deskwell|Plainform|Ledger & Line|Stillwater Studio|Arbor Desk Co.|Quillon|Modula
audiences: remote workers|freelancers|students|small-business owners|hybrid teams
closers: Backed by a {years}-year warranty.|Ships flat-packed with all hardware included.
closers: Our support team offers free setup help by chat.|Designed to pass commercial office durability tests.
-- stability|assembly|surface size|finish :: all-day remote work|a home study nook|a shared family workspace
+ a cable management grommet|a scratch-resistant finish|levelling feet for uneven floors|assembly in under 30 minutes
Ascend Dual-Motor Standing Desk | dual-motor electric standing desk | 549 | a 160 x 80 cm top and four memory height presets from 62 to 127 cm
Nook 100 Writing Desk | compact writing desk for small spaces | 189 | a 100 cm solid-oak top and a slim drawer for notebooks
Corner L-Shaped Desk | L-shaped corner desk | 299 | a 150 cm return wing for a dual-monitor and paperwork setup
Converter 32 Standing Desk Riser | standing desk converter | 189 | a gas-spring lift that turns an existing desk into a sit-stand station
Wallfold Floating Desk | wall-mounted fold-down desk | 149 | a drop-front that folds flat against the wall with shelf cubbies inside
-- lumbar support|seat cushion|armrest|assembly :: long workdays|late-night study sessions|gaming after hours
+ adjustable armrests|a synchro-tilt mechanism with tension control|smooth-rolling casters safe for hardwood
+ a 5-year warranty on the gas lift
Posture Pro Ergonomic Mesh Chair | ergonomic mesh office chair | 449 | adjustable lumbar support and a breathable elastomer mesh back
Executive Leather Office Chair | high-back leather executive chair | 329 | thick pocket-spring seat cushioning and a padded headrest
Atlas Big & Tall Office Chair | heavy-duty big and tall office chair | 379 | a 180 kg weight rating and an extra-wide 56 cm seat
Pitstop Racing-Style Chair | racing-style gaming chair | 259 | a 155-degree recline and a retractable footrest
-- sharpness|color accuracy|stand|port selection :: spreadsheets and coding|photo editing|working from a laptop
+ a flicker-free backlight|a low blue light mode|a matte anti-glare coating|multiple video inputs
Clarity 27 4K USB-C Monitor | 27-inch 4K USB-C monitor | 399 | a single cable that carries video and 90 W of laptop charging
Ultraview 34 Curved Monitor | 34-inch curved ultrawide monitor | 549 | a 3440 x 1440 panel that replaces a two-screen setup
Travel 15.6 Portable Monitor | 15.6-inch portable monitor | 179 | a 750 g slim panel with a folio stand for a second screen on the road
ColorPro 27 Designer Monitor | 27-inch factory-calibrated designer monitor | 699 | 99% Adobe RGB coverage and a shading hood for photo editing
-- typing feel|battery life|connectivity|noise level :: long writing sessions|shared offices|multi-device setups
+ Bluetooth pairing with up to three devices|a rechargeable USB-C battery|Windows and macOS layouts
+ a low-latency USB receiver
Tactile 75 Mechanical Keyboard | 75% wireless mechanical keyboard | 129 | hot-swappable brown tactile switches and a gasket-mounted plate
Silent Slim Wireless Keyboard | slim quiet wireless keyboard | 59 | scissor-switch keys that barely make a sound
Split Ergo Keyboard | split ergonomic keyboard | 149 | two tented halves and a cushioned palm rest that reduce wrist strain
Vertical Grip Ergonomic Mouse | vertical ergonomic mouse | 49 | a 57-degree handshake angle that eases forearm twisting
Precision MX Wireless Mouse | productivity wireless mouse | 89 | a hyper-fast scroll wheel and a thumb wheel for wide spreadsheets
-- brightness|color temperature|reach|glare control :: evening work|video meetings|reading paperwork
+ stepless dimming|five color temperatures from 2700 K to 6500 K|a USB charging port in the base
+ a memory function that remembers your last setting
Halo Arc LED Desk Lamp | architect-style LED desk lamp | 89 | a 60 cm swing arm and a heavy clamp that frees up desk space
Screenbar Monitor Light Bar | monitor light bar | 99 | an asymmetric beam that lights the desk without glare on the screen
Glow Ring 10 Video Light | 10-inch ring light for video calls | 45 | a flexible tripod and even front lighting for webcam calls
-- build quality|capacity|finish|assembly :: decluttering a desk|a tidy home office|better posture
+ a clean, minimalist finish|sturdy construction|quick assembly|a footprint that suits small rooms
Riser Walnut Monitor Stand | walnut monitor stand with drawer | 79 | a 10 cm lift that brings the screen to eye level and a hidden drawer
Mobile 3-Drawer Pedestal | mobile three-drawer filing pedestal | 169 | a lockable drawer for hanging letter files and five casters
Tidy Cable Management Kit | under-desk cable management kit | 35 | a steel tray, adhesive clips and sleeves that hide power strips
Pegwall Desk Pegboard | wall-mounted desk pegboard | 59 | hooks, shelves and cups that lift supplies off the worktop
Slate Felt Desk Mat | large felt and leather desk mat | 39 | a 90 x 40 cm surface that quiets keyboard noise and protects wood
-- audio quality|setup|build quality|mic pickup :: daily stand-ups|podcast recording|client presentations
+ plug-and-play USB setup with no drivers|certified compatibility with Zoom and Teams|an on-device mute control
+ a braided cable
Clearcall 4K Webcam | 4K webcam with auto-framing | 149 | AI framing that keeps you centered as you move
Podcast One USB Microphone | USB condenser microphone | 99 | a cardioid pickup pattern and a real-time headphone monitoring jack
Huddle Conference Speakerphone | conference speakerphone | 129 | a 360-degree mic array that covers a six-person meeting room
Focus Mono Headset | USB headset with noise-cancelling boom mic | 69 | a flip-to-mute boom that filters out keyboard clatter
-- paper quality|binding|layout|cover :: bullet journaling|meeting notes|planning the year ahead
+ paper that resists fountain-pen bleed-through|a lay-flat binding|an elastic closure band|a ribbon bookmark
Dotwise A5 Dot Grid Notebook | A5 dot-grid notebook | 22 | 240 numbered pages of 120 gsm ivory paper and an index
Yearplan 2026 Weekly Planner | weekly planner for 2026 | 29 | week-on-two-pages layouts with monthly goals and habit trackers
Legal Pad Leather Folio | refillable leather folio with legal pad | 59 | a full-grain leather cover with a pen loop and card pockets
-- ink flow|grip|weight|value :: journaling|sketching floor plans|signing contracts
+ a balanced weight for long writing sessions|a refillable design|a sturdy pocket clip|a gift box
Nib Classic Fountain Pen | piston-fill fountain pen | 89 | a steel medium nib and a transparent demonstrator barrel
Everyday Gel Pen 12-Pack | pack of twelve 0.5 mm gel pens | 14 | quick-drying ink that doesn't smudge for left-handed writers
Architect Mechanical Pencil | 0.5 mm drafting mechanical pencil | 24 | a knurled brass grip and a retractable lead sleeve
-- speed|setup|noise level|reliability :: running a home business|handling household paperwork|going paperless
+ a compact footprint for small desks|quick setup|an energy-saving sleep mode|a two-year warranty
Hubline 12-in-1 USB-C Dock | 12-in-1 USB-C docking station | 199 | dual 4K HDMI outputs, Ethernet and 100 W pass-through charging
Quietjet Wireless Laser Printer | compact monochrome laser printer | 179 | automatic double-sided printing at 30 pages per minute
Scanpro Document Scanner | desktop document scanner | 299 | a 50-sheet feeder that scans both sides to searchable PDF
Shredsafe 12-Sheet Shredder | cross-cut paper shredder | 89 | a 12-sheet cross-cut blade and a 20 L pull-out bin
== fitness FT
brands: Ironbark|Pacewell|Corestrong|Tidal Fitness|Summit Athletic|Forma|Redline Athletics|Kinfolk Yoga
audiences: beginners|home-gym builders|runners|busy parents|competitive athletes
closers: Covered by a {years}-year warranty.|Includes access to a library of free follow-along workouts.
closers: Wipe down after each session to keep it fresh.|Tested by certified personal trainers.
-- grip|build quality|space-saving design|finish :: strength training at home|full-body circuits|progressive overload
+ clear weight markings|a durable finish that resists chipping|a grip that stays secure when sweaty
+ a floor-friendly coating
Dial 24 Adjustable Dumbbells | pair of adjustable dumbbells | 349 | a dial that switches each one from 2.5 to 24 kg in seconds
Cast 16 Kettlebell | 16 kg cast iron kettlebell | 59 | a wide, smooth handle sized for two-handed swings
Hex Rubber Dumbbell Set | rubber hex dumbbell set with rack | 249 | five pairs from 2 to 10 kg on an A-frame rack
Olympic 100 kg Barbell Set | Olympic barbell and bumper plate set | 599 | a 20 kg bar with needle bearings and 80 kg of bumper plates
-- grip|cushioning|thickness|durability :: vinyasa flows|hot yoga|pilates and stretching
+ a non-slip texture|a moisture-resistant surface|alignment lines|a carrying strap
Grounded 6 mm Rubber Yoga Mat | 6 mm natural rubber yoga mat | 89 | a grippy open-cell top that holds poses even during sweaty classes
Voyage Travel Yoga Mat | foldable 1.5 mm travel yoga mat | 59 | a 900 g weight that folds small enough for a carry-on
Cushion 15 mm Exercise Mat | extra-thick 15 mm foam exercise mat | 39 | knee-friendly NBR foam for floor work and sensitive joints
Cork & Root Yoga Mat | cork-topped yoga mat | 79 | a natural cork surface that gets grippier as you sweat
-- smoothness|noise level|stability|console :: winter training|cardio before work|interval sessions
+ a Bluetooth console that syncs with training apps|transport wheels|a tablet holder
+ a steel frame with a 136 kg user rating
Stride 3.0 Folding Treadmill | folding home treadmill | 899 | a 2.5 HP motor, a 16 km/h top speed and a cushioned deck
Quietflow Magnetic Rower | magnetic rowing machine | 599 | 16 levels of near-silent magnetic resistance
Spinrise Indoor Cycling Bike | indoor cycling bike | 549 | a 20 kg flywheel and SPD-compatible pedals
Walkpad Under-Desk Treadmill | under-desk walking pad | 299 | a 6 km/h top speed and a low deck that slides under a sofa
-- tension range|durability|portability|clarity of the instructions :: hotel-room workouts|physical therapy|bodyweight training
+ a door anchor|a mesh carry bag|an exercise guide with QR-linked videos|heavy-duty construction
Loop Set Resistance Bands | set of five latex resistance loop bands | 24 | color-coded tensions from extra light to extra heavy
Suspend Pro Suspension Trainer | suspension trainer | 129 | adjustable nylon straps with cam buckles and padded handles
Doorway Pull-Up Bar | doorway pull-up bar | 39 | a no-screw leverage mount that fits frames 62 to 92 cm wide
Core Roll Ab Wheel | ab roller wheel with knee pad | 25 | a wide dual wheel for stable core rollouts
Tube Trainer Band Set | set of tube resistance bands with handles | 34 | stackable tubes that add up to 68 kg of resistance
-- intensity|noise level|battery life|size :: post-run recovery|sore shoulders after lifting|desk-job tension
+ USB-C charging|a carrying case|multiple intensity settings|a quiet motor
Pulsar Mini Massage Gun | compact percussion massage gun | 129 | a 12 mm amplitude and five speeds in a body that fits a jacket pocket
Pulsar Pro Massage Gun | deep-tissue percussion massage gun | 249 | a 16 mm stroke and a five-hour battery for athletes
Airwrap Compression Boots | air compression recovery boots | 699 | sequential pneumatic compression that flushes tired legs after long runs
-- firmness|texture|size|durability :: warm-ups|tight hamstrings and IT bands|mobility work
+ a hollow core that stays firm|a compact size for gym bags|a sweat-proof surface|a printed exercise guide
Gridline Textured Foam Roller | 33 cm textured foam roller | 34 | a multi-density grid surface that mimics a therapist's hands
Vibe Vibrating Foam Roller | vibrating foam roller | 99 | four vibration levels that help loosen stiff muscles
Peanut Massage Ball Set | peanut massage ball set | 19 | a double ball that straddles the spine for upper-back release
-- durability|adjustability|comfort|value :: HIIT circuits|sports conditioning|cardio at home
+ a carry pouch|adjustable sizing|durable materials|a beginner-friendly workout guide
Speed Cable Jump Rope | adjustable steel-cable speed rope | 24 | ball-bearing handles for fast double-unders
Agility Ladder & Cone Kit | agility ladder and cone training kit | 34 | a 6 m flat-rung ladder and 12 disc cones for footwork drills
Pulse Chest Heart Rate Strap | chest heart rate monitor strap | 79 | ECG-accurate readings broadcast over Bluetooth and ANT+
-- sturdiness|assembly|footprint|weight capacity :: a garage gym|heavy compound lifts|plyometric training
+ heavy-duty construction|a commercial-grade finish|straightforward assembly|a high weight capacity
Foldaway Adjustable Weight Bench | adjustable incline weight bench | 229 | seven back positions from decline to 85 degrees
Power Rack Squat Cage | full power rack | 649 | J-hooks and safety spotter arms for heavy squats without a partner
Puzzle Gym Floor Tiles | interlocking rubber gym floor tiles | 89 | 20 mm tiles that protect floors under dropped weights
Plyo 3-in-1 Foam Box | 3-in-1 foam plyo box | 149 | three jump heights of 50, 60 and 75 cm in one soft-sided box
-- fit|fabric|breathability|durability :: long runs|studio classes|cold-weather training
+ moisture-wicking fabric|flatlock seams that prevent chafing|reflective details for low light|an anti-odor treatment
Tempo 2-in-1 Running Shorts | 2-in-1 running shorts with liner | 45 | a phone pocket in the compression liner and a 13 cm inseam
Breathe Seamless Training Tee | seamless training tee | 39 | zoned knit ventilation across the back
Highrise Pocket Leggings | high-rise leggings with side pockets | 69 | squat-proof four-way stretch fabric
Thermal Touch Running Gloves | touchscreen running gloves | 29 | fingertips that work on phones and a fleece lining for winter runs
-- leak resistance|ease of cleaning|capacity|durability :: protein shakes after the gym|staying hydrated at work|long training days
+ BPA-free materials|a leakproof lid|a carry loop|dishwasher-safe parts
Mixer 700 Shaker Bottle | 700 ml protein shaker bottle | 15 | a stainless whisk ball and a flip cap
Gallon Goal Water Bottle | 2.2-litre water bottle with time markings | 24 | hourly intake markers that nudge you to keep drinking
Chill 750 Insulated Sports Bottle | 750 ml insulated squeeze bottle | 22 | a double-wall body that keeps water cold on hot rides
-- support|comfort|sizing|durability :: heavy deadlifts|powerlifting meets|high-volume pulling days
+ reinforced stitching|a wide range of sizes|a sweat-resistant finish|a lifetime guarantee
Brace 10 mm Lever Lifting Belt | 10 mm leather lever lifting belt | 89 | a lever buckle that locks tight for maximal squats and deadlifts
Grip Padded Lifting Straps | padded lifting straps | 19 | cotton straps with neoprene padding that save your grip on heavy rows
Lockout Wrist Wraps | heavy-duty wrist wraps | 24 | stiff elastic wraps with thumb loops that stabilize wrists under a heavy bench press
== garden GD
brands: Greenhaven|Thornfield|Willow & Wren|Sproutwell|Loam & Leaf|Fieldstone Tools|Hollybrook|Mossgate
audiences: first-time gardeners|allotment growers|balcony gardeners|keen homeowners|wildlife lovers
closers: Backed by a {years}-year guarantee.|Clean off soil and store dry over winter to extend its life.
closers: Made with FSC-certified wood or recycled materials where possible.
closers: Our horticulture team answers questions by email.
-- sharpness|grip|durability|weight :: spring pruning|planting bulbs|weeding raised beds
+ ergonomic handles|a rust-resistant finish|a hanging hole for shed storage|a lifetime guarantee
Precision Bypass Pruners | bypass hand pruners | 39 | SK5 steel blades that cut branches up to 2 cm cleanly
Longreach Telescopic Loppers | telescopic anvil loppers | 59 | extendable handles and a ratchet action for 5 cm deadwood
Heritage Border Spade | stainless border spade | 69 | a polished stainless blade and ash shaft for digging in tight beds
Hori Hori Digging Knife | Japanese hori hori garden knife | 34 | a serrated edge and depth markings for planting bulbs
Potting Trowel & Fork Set | trowel and hand fork set | 24 | cast aluminum heads with soil depth markings
-- water pressure|leak resistance|ease of use|durability :: summer heatwaves|keeping a vegetable patch watered|lawn care
+ weather-resistant construction|compact winter storage|a design that is easy on the hands
Flexi 30 m Expandable Hose | 30-metre expandable garden hose | 49 | a latex core that shrinks to a third of its length when empty
Rainmaster 10-Pattern Spray Nozzle | 10-pattern hose nozzle | 19 | a thumb-controlled trigger with settings from mist to jet
Smart Drip Irrigation Kit | drip irrigation kit with timer | 89 | 50 adjustable drippers and a programmable tap timer for raised beds
Haws-Style 9 L Watering Can | 9-litre galvanized watering can | 54 | a long spout and a brass rose for gentle seedling showers
Arcwave Oscillating Sprinkler | oscillating lawn sprinkler | 34 | adjustable width coverage of up to 300 square metres
-- drainage|sturdiness|size|appearance :: growing vegetables|kitchen herbs|small-space gardening
+ good drainage to prevent root rot|weather-resistant materials|simple assembly|a natural look that suits any garden
Cedar 120 Raised Garden Bed | cedar raised garden bed | 149 | a 120 x 60 x 30 cm frame of untreated western red cedar
Self-Watering Herb Planter | self-watering windowsill planter | 29 | a wicking reservoir that keeps basil watered for two weeks
Fabric Grow Bag 5-Pack | five-pack of fabric grow bags | 24 | breathable felt pots that air-prune roots for potatoes and tomatoes
Vertical Living Wall Planter | vertical wall planter | 69 | 36 pockets for growing strawberries and herbs on a balcony wall
-- germination rate|packaging|variety|clarity of the instructions :: a first vegetable garden|spring sowing|teaching kids to grow food
+ clear growing instructions|organic inputs|resealable packaging|suitability for beginners
Heirloom Tomato Seed Collection | heirloom tomato seed collection | 19 | 12 open-pollinated varieties including Brandywine and Cherokee Purple
Pollinator Wildflower Seed Mix | pollinator wildflower seed mix | 15 | native species that feed bees and butterflies from spring to fall
Kitchen Herb Starter Kit | indoor herb starter kit | 29 | peat-free pots, soil discs and seeds for basil, parsley and chives
Peat-Free Potting Mix 40 L | 40-litre peat-free potting mix | 18 | coir and composted bark with a slow-release organic feed
-- power|battery life|noise level|weight :: weekly lawn care|tidying borders|autumn cleanup
+ a brushless motor|quiet, fume-free operation|a fast charger in the box|easy one-handed controls
Edge 40V Cordless String Trimmer | 40-volt cordless string trimmer | 149 | a bump-feed head and a 35 cm cutting swath
Quiet 40V Cordless Lawn Mower | cordless push lawn mower | 399 | a 46 cm steel deck and single-lever height adjustment
Hedgepro Cordless Hedge Trimmer | cordless hedge trimmer | 129 | a 56 cm dual-action blade that cuts 20 mm branches
Gust Cordless Leaf Blower | cordless leaf blower | 139 | a turbo boost that clears wet leaves from patios
Robolawn GPS Robotic Mower | robotic lawn mower | 899 | wire-free GPS navigation and a self-docking charger that keep lawns up to 800 square metres trimmed
-- weather resistance|assembly|comfort|appearance :: summer evenings on the patio|entertaining outdoors|relaxing in the garden
+ weather-resistant materials|easy assembly|a timeless design|simple off-season storage
Firebowl Smokeless Fire Pit | smokeless stainless fire pit | 249 | a double-wall airflow design that burns wood with almost no smoke
Teak Folding Bistro Set | teak bistro set | 399 | a 60 cm round table and two folding chairs in FSC teak
Canopy 3 m Tilting Patio Umbrella | 3-metre tilting patio umbrella | 129 | a crank lift and a UPF 50+ canopy
Glowpath Solar Path Lights 8-Pack | eight-pack of solar path lights | 39 | warm-white LEDs that switch on automatically at dusk
-- bird activity|sturdiness|ease of cleaning|appearance :: backyard nature watching|a wildlife-friendly garden|sharing nature with kids
+ natural materials|easy hanging or mounting|simple seasonal cleaning|a design that blends into the garden
Squirrel-Proof Tube Bird Feeder | squirrel-proof tube bird feeder | 49 | a weight-activated perch that closes the feeding ports under a squirrel
Cedar Nesting Box | cedar bird nesting box | 29 | a 28 mm entrance hole sized for blue tits and chickadees
Solitary Bee Hotel | solitary bee hotel | 25 | bamboo and drilled-wood tubes for mason and leafcutter bees
Hanging Copper Bird Bath | hanging copper bird bath | 39 | a shallow 30 cm basin that small birds can wade into
-- capacity|odor control|speed|assembly :: cutting household food waste|making free soil improver|apartment composting
+ recycled plastic construction|a lid that keeps out pests|a clear guide to greens and browns
Tumbler 160 L Compost Bin | dual-chamber compost tumbler | 139 | a rotating drum that turns scraps into compost in about eight weeks
Wormery Stacking Worm Farm | stacking worm farm | 99 | three trays where composting worms turn kitchen scraps into castings
Kitchen Caddy Compost Pail | countertop compost caddy | 29 | a 5-litre pail whose charcoal filter lid keeps fruit flies and odors in until it's emptied
-- sturdiness|temperature control|size|durability :: starting seeds early|protecting tender plants|extending the growing season
+ UV-stabilised materials|simple setup|reusable season after season
Walk-In Polytunnel Greenhouse | walk-in polytunnel greenhouse | 199 | a 3 x 2 m steel frame with roll-up windows
Seedling Heat Mat & Grow Light Kit | seed-starting heat mat and grow light kit | 69 | a thermostat-controlled mat and a full-spectrum LED bar
Frost Fleece Plant Covers | frost protection fleece covers | 19 | drawstring jackets that keep tender shrubs 3 °C warmer on cold nights
-- comfort|fit|durability|waterproofing :: long weekends of weeding|pruning thorny shrubs|muddy spring work
+ comfortable padding|a tough, washable build|a range of sizes
Thornproof Gardening Gloves | thornproof leather gardening gloves | 29 | goatskin palms and gauntlet cuffs for pruning roses
Flipseat Garden Kneeler | folding garden kneeler and seat | 39 | a padded kneeling pad that flips into a stool with side pouches
Muckabout Garden Clogs | waterproof garden clogs | 35 | slip-on rubber clogs with a cushioned footbed
== books BK
brands: Larkspur Press|Meridian House|Fernhill Books|Quarto & Vine|Blue Heron Publishing|Northlight Editions
brands: Harrow Street Press|Tidewater Books
audiences: curious readers|book clubs|gift shoppers|lifelong learners|reluctant readers
closers: The {fmt} edition runs {pages} pages.|Also available as an ebook and audiobook.
closers: Printed on FSC-certified paper.|A {fmt} edition with a new afterword is also available.
-- recipe clarity|photography|ingredient list|index :: weekend cooking projects|gifting to a foodie|building kitchen confidence
+ step-by-step photographs|metric and imperial measurements|make-ahead and storage notes|a pantry-staples chapter
Salt, Smoke & Ember | live-fire grilling cookbook | 35 | 110 recipes for cooking over charcoal, hardwood and open flame
The Sourdough Year | sourdough baking guide | 30 | a season-by-season plan for keeping a starter and baking open-crumb loaves
Thirty-Minute Plants | vegetarian weeknight cookbook | 27 | fast plant-based dinners that use one pan and common pantry staples
Dumpling Atlas | dumpling cookbook | 32 | folds and fillings from gyoza and pierogi to momos and soup dumplings
Little Kitchen Helpers | family cookbook for cooking with kids | 22 | simple recipes where young children measure, mix and decorate
-- illustration quality|accuracy|portability|organization :: weekend hikes|family nature walks|backyard observation
+ detailed color illustrations|a rugged, water-resistant cover|a compact format for a jacket pocket
+ a quick-reference index
Birds of the Eastern Woodlands | pocket field guide to birds | 24 | 450 species with notes on songs, nests and seasonal plumage
Mushrooms of the Pacific Northwest | mushroom identification guide | 29 | spore-print charts and clear warnings about deadly look-alikes
Night Sky Through the Seasons | stargazing guide | 25 | month-by-month star charts for finding constellations and planets with binoculars
Wildflowers by the Trail | wildflower field guide | 22 | flowers organized by petal color for fast identification
-- pacing|plot|characterization|ending :: a long flight|a rainy weekend|beach reading
+ short, propulsive chapters|a genuinely surprising final twist|a richly drawn setting|a sharp, wry narrator
The Lighthouse Ledger | coastal murder mystery | 18 | a retired harbor pilot investigating a death on a storm-cut island
Cold Open | political thriller | 19 | a speechwriter who discovers a coded message hidden in a president's address
Ash Lane | cozy village mystery | 16 | a bookshop owner and her basset hound solving a poisoning at the summer fete
Nine Floors Down | psychological thriller | 18 | four strangers trapped in a stalled elevator, one of whom is lying
-- worldbuilding|characterization|pacing|ending :: escaping into another world|long winter evenings|a book club looking for something different
+ an inventive magic or technology system|a large cast with clear motivations|a map and glossary
+ a satisfying standalone ending
The Tidewright | epic fantasy novel | 28 | a sea-witch apprentice who can bend tides in a kingdom of drowned cities
Relay Station Nine | hard science fiction novel | 20 | a lone engineer keeping a signal relay alive at the edge of the solar system
The Clockwork Teahouse | cozy fantasy novel | 18 | a retired mercenary who opens a tea shop in a town of enchanted machines
Generation Ship Ardent | space opera | 22 | a mutiny aboard a 300-year generation ship as it nears its new world
-- prose|characterization|emotional impact|pacing :: book club discussions|slow Sunday reading|gifting to a thoughtful friend
+ luminous, precise prose|a structure that shifts between decades|a deeply realized sense of place
+ an ending that lingers
Salt Marsh Summers | multigenerational family saga | 27 | three sisters returning to their late mother's oyster farm in Maine
The Translator's Daughter | literary novel | 26 | a young interpreter uncovering her father's wartime letters in Lisbon
What the River Keeps | coming-of-age novel | 17 | two boys canoeing the length of a flooding river the summer before college
The Glass Orchard | historical novel | 19 | a glassblower's apprentice in 1920s Venice caught between two rival workshops
-- illustration quality|story|durability|read-aloud rhythm :: bedtime stories|preschool circle time|a baby shower gift
+ bright full-page illustrations|rhyming text that's fun to read aloud|sturdy pages|a gentle message
Goodnight, Little Lighthouse | bedtime picture book | 15 | a lighthouse saying goodnight to the boats, gulls and stars one by one
Dino Diggers | lift-the-flap board book | 12 | dinosaurs driving excavators and dump trucks on a building site
Mo and the Messy Feelings | picture book about big emotions | 17 | a little monster learning to name anger, worry and joy
The Counting Garden | counting picture book | 14 | the numbers one to twenty told through vegetables growing in a garden
-- research|readability|illustration quality|depth :: a deep dive into the past|the daily commute|understanding how the modern world came to be
+ archival photographs and maps|extensive endnotes|a clear timeline|an engaging, accessible narrative
Empires of Salt | history of the salt trade | 32 | the story of how salt shaped trade routes, taxes and revolutions from Rome to Gandhi
The Clockmakers | history of timekeeping | 30 | the craftsmen and astronomers who built accurate clocks for navigation at sea
Hidden Rivers of the City | urban natural history | 28 | the buried streams that still flow beneath modern cities
Mycelium Mind | popular science book about fungi | 29 | the underground fungal networks that link trees in a forest
-- practical advice|writing style|tone|exercise :: a fresh start in January|career changes|building better routines
+ end-of-chapter exercises|printable worksheets|real case studies|a 30-day plan
The Two-Minute Start | habit-building guide | 24 | small daily actions that snowball into lasting routines
Deep Hours | book on focus and productivity | 26 | techniques for protecting distraction-free time at work
Money on Autopilot | personal finance guide | 22 | budgeting, index funds and automated saving for people in their twenties
Speak Up, Calmly | guide to difficult conversations | 23 | scripts for negotiating pay and giving tough feedback
-- clarity of the instructions|diagram quality|project selection|difficulty level :: learning a new hobby|weekend projects|self-taught skill building
+ step-by-step diagrams|projects graded by difficulty|a tools-and-materials checklist|troubleshooting tips
Python for Data People | programming book for beginners | 39 | hands-on lessons in Python, pandas and plotting with real datasets
Weekend Woodworking | beginner woodworking project book | 29 | twelve furniture builds using only hand tools and a circular saw
Knit One Sweater | knitting pattern book | 26 | top-down sweater patterns sized from XS to 5XL
Film Photography Field Manual | film photography guide | 27 | exposure, metering and darkroom developing for 35 mm film
-- map quality|itinerary advice|accuracy|layout :: trip planning|a first visit|independent travel
+ fold-out maps|suggested itineraries|budget tips|phrasebook sections
Slow Roads of Portugal | travel guide to Portugal | 24 | itineraries through the Alentejo, the Douro valley and the Algarve by train and car
Japan by Rail | rail travel guide to Japan | 26 | route planning with a national rail pass from Hokkaido to Kyushu
The Long Trail Companion | hiking guidebook | 22 | day-by-day stages, water sources and campsites along a 440 km long-distance trail
== toys TY
brands: Pip & Pebble|Brightbox|Tumbleweed Toys|Little Maple|Wonderkin|Zigzag Play|Oddsock Games|Starling Studio
audiences: parents|grandparents shopping for gifts|preschool teachers|curious kids|families with siblings
closers: Meets ASTM F963 and EN 71 toy safety standards.|Backed by a {years}-year replacement guarantee.
closers: Ships in a gift-ready box.|Not suitable for children under 3 unless stated.
-- piece fit|clarity of the instructions|replay value|durability :: rainy afternoons|open-ended creative play|building with a parent
+ a sturdy storage box|an idea booklet to get started|non-toxic, BPA-free materials
+ pieces that are easy for small hands to grip
Harbor Town Building Set | 1,200-piece harbor town building set | 89 | a working drawbridge, a fishing boat and six minifigures
Magnetic Tiles 100-Piece Set | 100-piece magnetic tile set | 69 | translucent tiles with strong magnets that click together into towers
Marble Run Mega Track | marble run construction set | 59 | 150 pieces including spirals, funnels and a crank elevator
Wooden Block Castle | wooden castle block set | 45 | 84 beechwood blocks with turrets and arches
Robotics Starter Kit | coding robot building kit | 129 | a programmable hub, motors and sensors with block-based coding for ages 8 and up
-- softness|washability|stitching|size :: bedtime cuddles|a newborn gift|comfort on long car rides
+ surface-washable fabric|embroidered eyes that are safe for babies|recycled polyester fill|a gift-ready tag
Bramble the Hedgehog Plush | 30 cm hedgehog plush | 25 | velvety brown fur and a cream tummy
Sleepy Whale Weighted Plush | weighted whale plush | 39 | a 1 kg glass-bead fill for calming cuddles
Giant Teddy 90 cm | 90 cm giant teddy bear | 79 | an oversized huggable body that's bigger than most toddlers
Glow Lamb Night-Light Plush | lamb plush with lullaby night light | 35 | a soft belly glow and five lullabies
-- rulebook|replay value|component quality|player count :: family game night|parties|screen-free evenings
+ a rulebook with a quick-start page|a sturdy insert to organize the pieces|rounds that last 20 to 45 minutes
+ richly illustrated cards
Trade Winds Board Game | strategy board game about spice trading | 49 | sailing routes, auctions and support for 2 to 5 players
Word Sprint Party Game | fast-paced word party game | 22 | teams shouting clues against a sand timer
Forest Friends Co-op Game | cooperative game for young children | 25 | players working together to get animals home before the storm
Cipher Escape Room in a Box | escape-room puzzle game | 29 | locked envelopes and codes to crack in 60 minutes
Dungeon Depths Card Game | deck-building card game | 35 | a fantasy dungeon crawl with 240 cards
-- piece fit|image quality|difficulty|matte finish :: quiet afternoons|a focused activity for older kids|relaxing after work
+ a reference poster|thick, matte pieces|recycled board|a reusable box
Alpine Lake 1000-Piece Jigsaw | 1000-piece landscape jigsaw puzzle | 24 | a photograph of a mountain lake at sunrise
World Map 200-Piece Kids Puzzle | 200-piece world map puzzle for kids | 19 | animals and landmarks on every continent
Music Box 3D Wooden Model | 3D wooden mechanical model kit | 39 | laser-cut plywood gears that build into a working music box
Chunky Farm Peg Puzzle | wooden peg puzzle for toddlers | 15 | eight chunky farm animals with easy-grip knobs
-- durability|assembly|fun factor|safety :: backyard afternoons|burning off energy|summer at the park
+ weather-resistant materials|tool-free setup|bright, cheerful colors|a design tested for outdoor use
Glide 12 Balance Bike | 12-inch balance bike | 119 | an adjustable seat and puncture-proof tires for ages 2 to 5
Skyhop 8 ft Trampoline | 8-foot backyard trampoline with safety net | 299 | a padded frame and an enclosure net that zips shut
Splash Pad Sprinkler Mat | splash pad sprinkler mat | 29 | a 170 cm mat with water jets that spray up to 60 cm
Stomp Rocket Launcher | stomp rocket launcher | 24 | foam rockets that fly up to 30 metres with one stomp
-- realism|sturdiness|accessory set|play value :: imaginative role play|playdates|learning everyday skills
+ FSC-certified wood|non-toxic paints|plenty of accessories|rounded, child-safe corners
Little Chef Wooden Play Kitchen | wooden play kitchen | 149 | clicking knobs, an oven door and a pretend sink tap
Checkup Doctor's Kit | pretend doctor's kit | 29 | a working stethoscope and a carry case for play checkups
Market Stall Cash Register | toy cash register with play money | 35 | a scanner that beeps and a working calculator
Maple Lane Dollhouse | three-story wooden dollhouse | 129 | 14 furniture pieces and a working elevator
-- cleanup|material quality|clarity of the instructions|age suitability :: creative afternoons|birthday party activities|developing fine motor skills
+ washable, non-toxic materials|a storage case|a step-by-step guide|enough supplies for several projects
Friendship Bracelet Studio | friendship bracelet making kit | 19 | embroidery floss in 30 colors and a braiding wheel
Mess-Free Paint Sticks 24 | set of 24 mess-free paint sticks | 15 | quick-drying solid tempera that glides like a glue stick
Air-Dry Clay Creatures Kit | air-dry clay sculpting kit | 24 | modeling clay and tools for making 12 animals
Spin Junior Pottery Wheel | kids' pottery wheel | 59 | a motorized wheel and real clay for spinning bowls
-- educational value|clarity of the instructions|build quality|engagement :: homeschool science|rainy-day experiments|a birthday gift for a budding scientist
+ a full-color guide|real scientific components|projects that build on each other|clear safety notes
Crystal Garden Growing Lab | crystal growing science kit | 24 | seven colored crystal formulas and display domes
Explorer 1000x Kids Microscope | beginner microscope for kids | 59 | 40x to 1000x magnification and a set of prepared slides
Solar Robot 12-in-1 Kit | 12-in-1 solar robot kit | 29 | a solar panel that powers twelve buildable robot designs
Starlight Planetarium Projector | star projector night light | 39 | discs that project constellations and the Moon onto the ceiling
-- safety|durability|ease of cleaning|engagement :: early sensory play|quiet playtime|a baby shower gift
+ BPA-free and phthalate-free materials|easy-clean surfaces|rounded edges|no small parts
Meadow Activity Play Gym | baby play gym | 79 | a padded mat and five hanging sensory toys
Rainbow Stacking Rings | wooden stacking rainbow | 25 | seven nesting arches in soft pastel tones
Tugboat Bath Boats Set | set of bath boats | 19 | three floating boats that stack and pour water
-- speed|battery life|handling|durability :: backyard races|indoor stunts|a first remote-control toy
+ a rechargeable USB battery|a 2.4 GHz controller|spare parts in the box|a speed limiter for beginners
Rockcrawler 4x4 RC Truck | 1:16 remote control rock crawler | 69 | four-wheel drive and oil-filled shocks for climbing over rocks
Flipside Stunt Car | double-sided stunt car | 39 | a body that flips and keeps driving upside down
Skyfly Kids Mini Drone | beginner mini drone for kids | 49 | altitude hold and prop guards for safe indoor flying
"""

Variant = tuple[str, str, float, str]  # model, product phrase, base price, detail


class ProductType(NamedTuple):
    """A family of related products sharing review aspects, features and uses."""

    aspects: list[str]
    uses: list[str]
    features: list[str]
    variants: list[Variant]


class Category(NamedTuple):
    """Per-category vocabulary: SKU prefix, brands, audiences, closing lines and product types."""

    prefix: str
    brands: list[str]
    audiences: list[str]
    closers: list[str]
    types: list[ProductType]


def parse_catalog(text: str) -> dict[str, Category]:
    """Parse ``CATALOG_TEXT`` into categories, preserving file order."""
    catalog: dict[str, Category] = {}
    cat: Category | None = None
    ptype: ProductType | None = None
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line.startswith("== "):
            name, prefix = line[3:].split()
            cat = catalog[name] = Category(prefix, [], [], [], [])
        elif line.startswith(("brands:", "audiences:", "closers:")):
            assert cat is not None, f"vocabulary before any category: {line}"
            key, _, values = line.partition(":")
            getattr(cat, key).extend(values.strip().split("|"))
        elif line.startswith("-- "):
            aspects, uses = line[3:].split(" :: ")
            ptype = ProductType(aspects.split("|"), uses.split("|"), [], [])
            assert cat is not None, f"product type before any category: {line}"
            cat.types.append(ptype)
        elif line.startswith("+ "):
            assert ptype is not None, f"feature before any product type: {line}"
            ptype.features.extend(line[2:].split("|"))
        else:
            assert ptype is not None, f"variant before any product type: {line}"
            model, phrase, price, detail = (part.strip() for part in line.split(" | "))
            ptype.variants.append((model, phrase, float(price), detail))
    return catalog


CATALOG = parse_catalog(CATALOG_TEXT)

INTROS = [
    "The {name} is {aphrase} with {detail}.",
    "Meet the {model} from {brand}: {aphrase} built around {detail}.",
    "{brand} designed the {model} as {aphrase}, and it stands out for {detail}.",
    "Looking for {aphrase} that is built to last? The {name} brings {detail}.",
    "This {phrase} from {brand} pairs {detail} with {f0}.",
    "With {detail}, the {name} is {aphrase} worth a closer look.",
]
BOOK_INTROS = [
    "{name} is {aphrase} by {author}, featuring {detail}.",
    "In {name}, {author} delivers {aphrase} built around {detail}.",
    "{author}'s {name} is {aphrase} centered on {detail}.",
    "From {brand} comes {name}, {aphrase} by {author} that explores {detail}.",
]
FEATURE_SENTENCES = [
    "It also comes with {f1} and {f2}.",
    "Thoughtful extras include {f1} plus {f2}.",
    "You also get {f1}, along with {f2}.",
    "{F1} and {f2} round out the design.",
    "Details like {f1} and {f2} make everyday use easier.",
]
BOOK_FEATURE_SENTENCES = ["Readers will find {f1} and {f2}.", "Highlights include {f1} and {f2}.",
                          "Expect {f1} alongside {f2}."]
USE_SENTENCES = [
    "It is a great fit for {audience}, especially for {use}.",
    "Made with {audience} in mind, it shines for {use}.",
    "{Audience} will appreciate it for {use}.",
]
GEAR_USE_SENTENCES = ["Expect it to earn its keep for {use}."]  # not used for books
SECOND_USE_SENTENCES = ["It also makes a smart pick for {use2}."]
GEAR_SECOND_USE_SENTENCES = ["It is just as handy for {use2}."]
EXTRA_SENTENCES = [
    "One more nice touch: {f3}.",
    "Reviewers often single out {f3} as a favorite detail.",
    "Add {f3}, and it is easy to see why it sells out each season.",
]

FIRST_NAMES = (
    "Maya|Liam|Priya|Jonah|Sofia|Mateo|Aisha|Owen|Hana|Caleb|Noor|Elena|Marcus|Zoe|Ravi|Grace|Diego|Leah|"
    "Tomás|Ingrid|Kofi|Chloe|Samir|Nina|Ethan|Yuki|Gabriel|Ruth|Andre|Freya|Omar|Lucy|Felix|Amara|Henry|"
    "Mei|Isaac|Clara|Tariq|Josie|Viktor|Imani|Arjun|Rosa|Declan|Leila|Noah|Beatrix|Kenji|Ada"
).split("|")
LAST_NAMES = (
    "Okafor|Lindqvist|Marsh|Castellanos|Whitaker|Nakamura|Brennan|Adeyemi|Holloway|Kaur|Moreau|Fitzgerald|"
    "Tanaka|Reyes|Abernathy|Sorensen|Patel|Quinlan|Vasquez|Ashford|Kowalski|Delacroix|Hughes|Mbeki|Carver|"
    "Ferreira|Lindgren|Oduya|Prescott|Haddad"
).split("|")

RATING_WEIGHTS = [4, 6, 12, 30, 48]  # ratings 1..5, skewed positive
REVIEW_COUNT_WEIGHTS = [10, 15, 20, 18, 14, 10, 6, 4, 3]  # 0..8 reviews per item, mean ~3
TITLES = {
    5: ["Love it", "Exactly what I needed", "Worth every penny", "Five stars", "Fantastic quality", "Superb"],
    4: ["Very good", "Solid choice", "Happy with it", "Great value", "Does the job well"],
    3: ["Decent but not perfect", "It's okay", "Mixed feelings", "Average"],
    2: ["Not great", "Expected more", "Underwhelming"],
    1: ["Disappointed", "Would not buy again", "Returned it"],
}
POSITIVE = ["The {a} is excellent.", "Really impressed with the {a}.", "The {a} exceeded my expectations.",
            "Zero complaints about the {a}.", "The {a} is spot on."]
MINOR_GRIPE = ["Only knock is the {b}, which could be better.",
               "The {b} is merely fine, but that's a small thing."]
MIXED = ["The {a} is fine, but the {b} is only average.", "Good {a}, though I'm not sold on the {b}.",
         "Mixed bag: I like the {a}, less so the {b}."]
NEGATIVE = ["The {a} was a real letdown.", "Disappointed with the {a}.",
            "The {a} just didn't work for me.", "For the price, I expected more from the {a}."]
CONTEXT = ["Bought it for {use}.", "I've been using it for {use} for a few weeks now.",
           "Picked it up for {use}.", "Got this mainly for {use}."]
BOOK_CONTEXT = ["Read it for {use}.", "Picked it up for {use}.", "Chose this one for {use}."]
SIGN_OFF = {True: ["Would buy again.", "Highly recommended.", "Glad I went with this one."],
            False: ["Ended up returning it.", "Would not buy again.", "Look elsewhere."]}


def cap(text: str) -> str:
    """Upper-case the first character only (keeps brand names intact)."""
    return text[:1].upper() + text[1:]


def article(phrase: str) -> str:
    """Prefix a noun phrase with "a" or "an" based on how it is spoken."""
    low = phrase.lower()
    number = re.match(r"\d[\d,]*", low)
    if number:
        digits = number.group().replace(",", "")
        vowel = digits.startswith("8") or digits in {"11", "18"}
    else:
        vowel = low[0] in "aeiou" and not low.startswith(("uni", "use", "usb", "uv", "one", "eu"))
    return ("an " if vowel else "a ") + phrase


def slugify(text: str) -> str:
    """Turn a product name into an ASCII URL slug."""
    text = unicodedata.normalize("NFKD", text.replace("&", " and "))
    text = text.encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")


def iso(moment: datetime) -> str:
    """Format a UTC datetime as ISO 8601 with a ``Z`` suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")


def random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """Pick a minute-resolution moment uniformly between ``start`` and ``end``."""
    minutes = int((end - start).total_seconds() // 60)
    return start + timedelta(minutes=rng.randint(0, minutes))


def retail_price(rng: random.Random, base: float) -> str:
    """Jitter a base price by up to 10% and round to a typical retail ending."""
    whole = max(int(round(base * rng.uniform(0.9, 1.1))), 5)
    cents = rng.choice([0.99, 0.99, 0.95, 0.0]) if whole >= 10 else 0.99
    return f"{whole - 1 + cents if cents else float(whole):.2f}"


def describe(rng: random.Random, category: str, cat: Category, ptype: ProductType,
             variant: Variant, brand: str, name: str, author: str) -> str:
    """Compose a 3-5 sentence description of roughly 50-110 words for one product."""
    model, phrase, _, detail = variant
    books = category == "books"
    features = rng.sample(ptype.features, min(4, len(ptype.features)))
    f0, f1, f2, f3 = features + [""] * (4 - len(features))
    use, use2 = rng.sample(ptype.uses, 2)
    audience = rng.choice(cat.audiences)
    slots = {
        "name": name, "model": model, "brand": brand, "phrase": phrase, "aphrase": article(phrase),
        "detail": detail, "author": author, "f0": f0, "f1": f1, "f2": f2, "F1": cap(f1), "f3": f3,
        "use": use, "use2": use2, "audience": audience, "Audience": cap(audience),
    }
    core = [
        rng.choice(BOOK_INTROS if books else INTROS),
        rng.choice(BOOK_FEATURE_SENTENCES if books else FEATURE_SENTENCES),
        rng.choice(USE_SENTENCES + ([] if books else GEAR_USE_SENTENCES)),
    ]
    closer = rng.choice(cat.closers).format(
        years=rng.choice([1, 2, 3, 5]),
        pages=rng.randrange(160, 520, 8),
        fmt=rng.choice(["hardcover", "paperback"]),
    )
    second_use = SECOND_USE_SENTENCES + ([] if books else GEAR_SECOND_USE_SENTENCES)
    optional = [rng.choice(second_use), closer]
    if f3:
        optional.insert(0, rng.choice(EXTRA_SENTENCES))
    rng.shuffle(optional)
    limit = 1 if "?" in core[0] else 2  # a question intro already counts as two sentences
    chosen = [s for s in optional if rng.random() < 0.5][:limit]

    def render(parts: list[str]) -> str:
        ordered = core + [s for s in optional if s in parts]  # keep a stable sentence order
        return " ".join(cap(s.format(**slots)) for s in ordered)

    text = render(chosen)
    for extra in optional:  # top up short descriptions so they reach ~50 words (max 5 sentences)
        if len(text.split()) >= 50 or len(chosen) == limit:
            break
        if extra not in chosen:
            chosen.append(extra)
            text = render(chosen)
    return text


def review_body(rng: random.Random, category: str, ptype: ProductType, rating: int) -> str:
    """Write a 1-3 sentence review that mentions concrete aspects of the product type."""
    a, b = rng.sample(ptype.aspects, 2)
    if rating >= 4:
        parts = [rng.choice(POSITIVE).format(a=a)]
        if rating == 4 and rng.random() < 0.5:
            parts.append(rng.choice(MINOR_GRIPE).format(b=b))
    elif rating == 3:
        parts = [rng.choice(MIXED).format(a=a, b=b)]
    else:
        parts = [rng.choice(NEGATIVE).format(a=a)]
    if rng.random() < 0.6:
        context = BOOK_CONTEXT if category == "books" else CONTEXT
        parts.insert(0, rng.choice(context).format(use=rng.choice(ptype.uses)))
    if len(parts) < 3 and rng.random() < 0.35:
        parts.append(rng.choice(SIGN_OFF[rating >= 4]))
    return " ".join(cap(p) for p in parts)


def build(rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Generate item rows (in shuffled order, ids 1..N) and their review rows."""
    drafts = [(category, cat, ptype, variant) for category, cat in CATALOG.items()
              for ptype in cat.types for variant in ptype.variants]
    rng.shuffle(drafts)
    items: list[dict[str, str]] = []
    reviews: list[dict[str, str]] = []
    skus: set[str] = set()
    for item_id, (category, cat, ptype, variant) in enumerate(drafts, start=1):
        brand = rng.choice(cat.brands)
        author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        name = variant[0] if category == "books" else f"{brand} {variant[0]}"
        sku = f"{cat.prefix}-{rng.randint(10000, 99999)}"
        while sku in skus:
            sku = f"{cat.prefix}-{rng.randint(10000, 99999)}"
        skus.add(sku)
        updated = random_moment(rng, START, END)
        items.append({
            "item_id": str(item_id), "sku": sku, "name": name, "category": category, "brand": brand,
            "price": retail_price(rng, variant[2]), "currency": "USD",
            "description": describe(rng, category, cat, ptype, variant, brand, name, author),
            "url": f"https://shop.example.com/items/{slugify(name)}-{item_id}",
            "updated_at": iso(updated),
        })
        count = rng.choices(range(len(REVIEW_COUNT_WEIGHTS)), weights=REVIEW_COUNT_WEIGHTS)[0]
        for _ in range(count):
            rating = rng.choices(range(1, 6), weights=RATING_WEIGHTS)[0]
            created = random_moment(rng, updated - timedelta(days=365), END)
            title = rng.choice(TITLES[rating])
            if rating >= 4 and rng.random() < 0.3:
                title = f"Great {rng.choice(ptype.aspects)}"
            reviews.append({
                "review_id": str(len(reviews) + 1), "item_id": str(item_id), "rating": str(rating),
                "title": title, "body": review_body(rng, category, ptype, rating),
                "reviewer_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)[0]}.",
                "created_at": iso(created),
            })
    return items, reviews


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows to ``path`` as UTF-8 CSV with a header row and RFC 4180 minimal quoting."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    """Generate the catalog and write both CSV files next to this script."""
    items, reviews = build(random.Random(SEED))
    write_csv(OUT_DIR / "items.csv", items)
    write_csv(OUT_DIR / "reviews.csv", reviews)
    print(f"wrote {len(items)} items and {len(reviews)} reviews to {OUT_DIR}")


if __name__ == "__main__":
    main()
