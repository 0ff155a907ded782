"""Cross-lingual MPS (XMPS): the same generated problems written in en, es, fr, de, zh and ja.

`xmps_items(count, seed, kind)` draws `count` problems once (see `layerprobe.tasks.mps`) and renders
each in every language, so per-language accuracies compare the same problems, numbers and wrong
solutions. Templates are the project's own translations of the English ones; the Q:/A: layout
and the equations ("3 * 4 = 12") are the same in every language. Chinese and Japanese join
sentences without spaces. The loader for the study's cross-lingual files is `load_mps_jsonl`
with a `language` (same JSONL shape, translated answers).
"""

from __future__ import annotations

import random

from layerprobe.tasks.base import MCItem
from layerprobe.tasks.mps import ENGLISH, Language, problem_set, render_item

SPANISH = Language(
    names=["Lucía", "Mateo", "Sofía", "Diego", "Elena", "Pablo", "Marta", "Hugo"],
    questions={
        "bags": "{name} tiene {a} manzanas. {name} compra {b} bolsas con {c} manzanas en cada bolsa. ¿Cuántas manzanas tiene {name} ahora?",
        "shop": "{name} tiene {a} dólares y compra {b} libros que cuestan {c} dólares cada uno. ¿Cuántos dólares le quedan a {name}?",
        "share": "{name} tiene {b} cajas con {c} galletas en cada caja y las reparte por igual entre {d} amigos. ¿Cuántas galletas recibe cada amigo?",
        "pages": "Un libro tiene {c} páginas. {name} lee {a} páginas cada día durante {b} días. ¿Cuántas páginas le quedan por leer?",
        "stamps": "{name} tiene {a} sellos y le da {b} sellos a un amigo. Después {name} compra sellos hasta que su colección es {c} veces más grande. ¿Cuántos sellos tiene {name} ahora?",
        "garden": "{name} planta {a} filas de {b} tomateras y después {c} plantas más. Más tarde se mueren {d} plantas. ¿Cuántas plantas quedan?",
    },
    steps={
        "bags": ["{name} compra {eq} manzanas.", "Ahora {name} tiene {eq} manzanas."],
        "shop": ["Los libros cuestan {eq} dólares.", "A {name} le quedan {eq} dólares."],
        "share": ["Hay {eq} galletas.", "Cada amigo recibe {eq} galletas."],
        "pages": ["{name} lee {eq} páginas.", "Quedan {eq} páginas."],
        "stamps": ["{name} se queda con {eq} sellos.", "Ahora {name} tiene {eq} sellos."],
        "garden": ["{name} planta {eq} plantas en filas.", "Con las plantas extra hay {eq} plantas.",
                   "Así que quedan {eq} plantas."],
    },
    answer="La respuesta es {}.",
)

FRENCH = Language(
    names=["Camille", "Louis", "Chloé", "Hugo", "Léa", "Jules", "Manon", "Théo"],
    questions={
        "bags": "{name} a {a} pommes. {name} achète {b} sacs de {c} pommes chacun. Combien de pommes a {name} maintenant ?",
        "shop": "{name} a {a} dollars et achète {b} livres qui coûtent {c} dollars chacun. Combien de dollars reste-t-il à {name} ?",
        "share": "{name} a {b} boîtes de {c} biscuits et les partage équitablement entre {d} amis. Combien de biscuits chaque ami reçoit-il ?",
        "pages": "Un livre a {c} pages. {name} lit {a} pages par jour pendant {b} jours. Combien de pages reste-t-il à lire ?",
        "stamps": "{name} a {a} timbres et donne {b} timbres à un ami. Ensuite, {name} achète des timbres jusqu'à ce que sa collection soit {c} fois plus grande. Combien de timbres a {name} maintenant ?",
        "garden": "{name} plante {a} rangées de {b} plants de tomates, puis {c} plants de plus. Plus tard, {d} plants meurent. Combien de plants reste-t-il ?",
    },
    steps={
        "bags": ["{name} achète {eq} pommes.", "Maintenant {name} a {eq} pommes."],
        "shop": ["Les livres coûtent {eq} dollars.", "Il reste {eq} dollars à {name}."],
        "share": ["Il y a {eq} biscuits.", "Chaque ami reçoit {eq} biscuits."],
        "pages": ["{name} lit {eq} pages.", "Il reste {eq} pages."],
        "stamps": ["{name} garde {eq} timbres.", "Maintenant {name} a {eq} timbres."],
        "garden": ["{name} plante {eq} plants en rangées.", "Avec les plants en plus, il y a {eq} plants.",
                   "Il reste donc {eq} plants."],
    },
    answer="La réponse est {}.",
)

GERMAN = Language(
    names=["Lena", "Jonas", "Mia", "Felix", "Hanna", "Paul", "Emilia", "Leon"],
    questions={
        "bags": "{name} hat {a} Äpfel. {name} kauft {b} Tüten mit je {c} Äpfeln. Wie viele Äpfel hat {name} jetzt?",
        "shop": "{name} hat {a} Dollar und kauft {b} Bücher, die je {c} Dollar kosten. Wie viele Dollar hat {name} noch?",
        "share": "{name} hat {b} Schachteln mit je {c} Keksen und teilt sie gleichmäßig unter {d} Freunden auf. Wie viele Kekse bekommt jeder Freund?",
        "pages": "Ein Buch hat {c} Seiten. {name} liest {b} Tage lang jeden Tag {a} Seiten. Wie viele Seiten sind noch zu lesen?",
        "stamps": "{name} hat {a} Briefmarken und schenkt einem Freund {b} Briefmarken. Dann kauft {name} so viele Briefmarken, dass die Sammlung {c}-mal so groß ist. Wie viele Briefmarken hat {name} jetzt?",
        "garden": "{name} pflanzt {a} Reihen mit je {b} Tomatenpflanzen und dann {c} weitere Pflanzen. Später gehen {d} Pflanzen ein. Wie viele Pflanzen sind übrig?",
    },
    steps={
        "bags": ["{name} kauft {eq} Äpfel.", "Jetzt hat {name} {eq} Äpfel."],
        "shop": ["Die Bücher kosten {eq} Dollar.", "{name} hat noch {eq} Dollar."],
        "share": ["Es gibt {eq} Kekse.", "Jeder Freund bekommt {eq} Kekse."],
        "pages": ["{name} liest {eq} Seiten.", "Es bleiben {eq} Seiten."],
        "stamps": ["{name} behält {eq} Briefmarken.", "Jetzt hat {name} {eq} Briefmarken."],
        "garden": ["{name} pflanzt {eq} Pflanzen in Reihen.", "Mit den weiteren Pflanzen sind es {eq} Pflanzen.",
                   "Also sind {eq} Pflanzen übrig."],
    },
    answer="Die Antwort ist {}.",
)

CHINESE = Language(
    names=["小明", "小红", "小华", "小丽", "小刚", "小芳", "小军", "小梅"],
    questions={
        "bags": "{name}有{a}个苹果。{name}又买了{b}袋苹果，每袋{c}个。{name}现在有多少个苹果？",
        "shop": "{name}有{a}美元，买了{b}本书，每本{c}美元。{name}还剩多少美元？",
        "share": "{name}有{b}盒饼干，每盒{c}块，平均分给{d}个朋友。每个朋友分到多少块饼干？",
        "pages": "一本书有{c}页。{name}每天读{a}页，读了{b}天。还剩多少页没有读？",
        "stamps": "{name}有{a}张邮票，送给朋友{b}张。然后{name}又买了一些邮票，使收藏变成原来的{c}倍。{name}现在有多少张邮票？",
        "garden": "{name}种了{a}行番茄，每行{b}棵，然后又种了{c}棵。后来死了{d}棵。还剩多少棵？",
    },
    steps={
        "bags": ["{name}买了 {eq} 个苹果。", "现在{name}有 {eq} 个苹果。"],
        "shop": ["这些书花了 {eq} 美元。", "{name}还剩 {eq} 美元。"],
        "share": ["一共有 {eq} 块饼干。", "每个朋友分到 {eq} 块饼干。"],
        "pages": ["{name}读了 {eq} 页。", "还剩 {eq} 页。"],
        "stamps": ["{name}留下 {eq} 张邮票。", "现在{name}有 {eq} 张邮票。"],
        "garden": ["{name}在行里种了 {eq} 棵。", "加上多种的，一共有 {eq} 棵。", "所以还剩 {eq} 棵。"],
    },
    answer="答案是 {}。",
    joiner="",
)

JAPANESE = Language(
    names=["さくら", "けんた", "ゆい", "はると", "あおい", "そうた", "ひな", "れん"],
    questions={
        "bags": "{name}はりんごを{a}個持っています。{name}は{c}個入りの袋を{b}袋買いました。{name}は今りんごを何個持っていますか？",
        "shop": "{name}は{a}ドル持っていて、1冊{c}ドルの本を{b}冊買いました。{name}には何ドル残っていますか？",
        "share": "{name}は{c}枚入りのクッキーの箱を{b}箱持っていて、{d}人の友だちに同じ数ずつ分けます。友だち1人は何枚もらえますか？",
        "pages": "本は{c}ページあります。{name}は毎日{a}ページずつ{b}日間読みました。あと何ページ残っていますか？",
        "stamps": "{name}は切手を{a}枚持っていて、友だちに{b}枚あげました。そのあと{name}は切手を買い足して、コレクションを{c}倍にしました。{name}は今切手を何枚持っていますか？",
        "garden": "{name}はトマトの苗を1列{b}本ずつ{a}列植え、さらに{c}本植えました。その後{d}本が枯れました。残りは何本ですか？",
    },
    steps={
        "bags": ["{name}は {eq} 個のりんごを買いました。", "今、{name}は {eq} 個のりんごを持っています。"],
        "shop": ["本の代金は {eq} ドルです。", "{name}には {eq} ドル残っています。"],
        "share": ["クッキーは全部で {eq} 枚です。", "友だち1人は {eq} 枚もらえます。"],
        "pages": ["{name}は {eq} ページ読みました。", "残りは {eq} ページです。"],
        "stamps": ["{name}の手元には {eq} 枚残りました。", "今、{name}は {eq} 枚持っています。"],
        "garden": ["{name}は列に {eq} 本植えました。", "追加の苗を合わせると {eq} 本です。", "したがって残りは {eq} 本です。"],
    },
    answer="答えは {} です。",
    joiner="",
)

LANGUAGES: dict[str, Language] = {"en": ENGLISH, "es": SPANISH, "fr": FRENCH, "de": GERMAN, "zh": CHINESE, "ja": JAPANESE}


def xmps_items(count: int, seed: int = 0, kind: str = "cal", languages: list[str] | None = None) -> list[MCItem]:
    """`count` problems in every language (count x languages items), language in `meta`.

    `meta["group"]` names the problem: the probe keeps its translations in one cross-validation
    fold, or it would learn a problem's right numbers from the other languages."""
    codes = languages or list(LANGUAGES)
    problems = problem_set(count, seed, kind)
    items = []
    for code in codes:
        rng = random.Random(f"{seed}-{kind}-order")  # same candidate order in every language
        for number, (problem, wrong, d1, d2) in enumerate(problems):
            item = render_item(problem, wrong, [d1, d2], LANGUAGES[code], rng, "", code)
            item.meta["group"] = f"problem{number}"
            items.append(item)
    return items
