"""Red-team pictures for the humanoid gate and the visual hull, drawn in another style than
_turnaround_helpers' figures (which the gate's thresholds were first tuned on): Pillow shapes of figures
no one tuned on (a boxy robot, a bearded dwarf, a goblin with big ears, an astronaut, a child in a
dress, a figure with a staff, a tail, a Y pose ...) and of things a VRM must not be made of (an office
chair, a floor lamp, trees, a coat on a coat stand, a snowman, birds, a bottle, two people side by
side, profiles and three-quarter views).

Each function returns an RGBA PIL image with a transparent background (one, white_bg_figure, on a
plain white one). Coordinates are pixels on a 600 x 900 canvas unless a function says otherwise.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

W, H = 600, 900


def canvas(bg=None):
    if bg is None:
        return Image.new("RGBA", (W, H), (0, 0, 0, 0))
    return Image.new("RGBA", (W, H), bg + (255,))


def limb(d, p, q, w, fill):
    d.line([p, q], fill=fill, width=int(w))
    r = w / 2
    for x, y in (p, q):
        d.ellipse([x - r, y - r, x + r, y + r], fill=fill)


SKIN = (230, 190, 160, 255)
CLOTH = (60, 90, 160, 255)
DARK = (50, 40, 40, 255)


def humanoid(
    d,
    cx=300,
    top=60,
    scale=1.0,
    head_r=55,
    shoulder=95,
    hip=55,
    arm_w=34,
    leg_w=44,
    arms="down",
    legs_gap=1.0,
    body_col=CLOTH,
    torso_w=None,
    neck=True,
):
    s = scale
    hy = top + head_r * s
    d.ellipse([cx - head_r * s, top, cx + head_r * s, top + 2 * head_r * s], fill=SKIN)
    sh_y = hy + head_r * s + 20 * s
    hip_y = sh_y + 260 * s
    tw = (torso_w or shoulder) * s
    if neck:
        d.rectangle([cx - 18 * s, hy + head_r * s - 10, cx + 18 * s, sh_y + 5], fill=SKIN)
    d.polygon([(cx - tw, sh_y), (cx + tw, sh_y), (cx + hip * s + 10, hip_y), (cx - hip * s - 10, hip_y)], fill=body_col)
    # arms
    for sgn in (-1, 1):
        a0 = (cx + sgn * (tw - 10), sh_y + 15)
        if arms == "down":
            a1 = (cx + sgn * (tw + 30 * s), sh_y + 270 * s)
        elif arms == "A":
            a1 = (cx + sgn * (tw + 150 * s), sh_y + 220 * s)
        elif arms == "T":
            a1 = (cx + sgn * (tw + 230 * s), sh_y + 15)
        elif arms == "Y":
            a1 = (cx + sgn * (tw + 130 * s), sh_y - 200 * s)
        elif arms == "hips":
            mid = (cx + sgn * (tw + 70 * s), sh_y + 120 * s)
            limb(d, a0, mid, arm_w * s, body_col)
            a0, a1 = mid, (cx + sgn * (hip * s + 15), hip_y - 20 * s)
        limb(d, a0, a1, arm_w * s, body_col)
    # legs
    foot_y = H - 40
    for sgn in (-1, 1):
        l0 = (cx + sgn * (hip * s * 0.55) * legs_gap, hip_y - 10)
        l1 = (cx + sgn * (hip * s * 0.55 + 25 * s) * legs_gap, foot_y - 20)
        limb(d, l0, l1, leg_w * s, DARK)
        d.ellipse([l1[0] - 35 * s, foot_y - 35, l1[0] + 35 * s, foot_y], fill=DARK)
    return sh_y, hip_y


def save(im, path):
    im.save(path)
    return path


# ---------- should PASS
def robot():
    im = canvas()
    d = ImageDraw.Draw(im)
    g = (150, 155, 165, 255)
    k = (90, 95, 110, 255)
    d.rectangle([250, 40, 350, 140], fill=g)  # boxy head
    d.rectangle([270, 70, 330, 90], fill=(30, 200, 255, 255))
    d.rectangle([285, 140, 315, 165], fill=k)
    d.rectangle([190, 165, 410, 440], fill=g)  # chest box
    d.rectangle([140, 170, 188, 430], fill=k)
    d.rectangle([412, 170, 460, 430], fill=k)  # arms
    d.rectangle([130, 430, 195, 480], fill=g)
    d.rectangle([405, 430, 470, 480], fill=g)  # hands
    d.rectangle([215, 440, 385, 490], fill=k)  # hips
    d.rectangle([215, 490, 285, 820], fill=g)
    d.rectangle([315, 490, 385, 820], fill=g)  # legs
    d.rectangle([195, 820, 290, 860], fill=k)
    d.rectangle([310, 820, 405, 860], fill=k)  # feet
    return im


def dwarf():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.ellipse([225, 200, 375, 350], fill=SKIN)  # big head (low)
    d.polygon([(230, 300), (370, 300), (340, 500), (300, 540), (260, 500)], fill=(200, 120, 60, 255))  # beard
    d.ellipse([130, 340, 470, 700], fill=(120, 70, 40, 255))  # wide barrel body
    limb(d, (150, 400), (100, 640), 70, (120, 70, 40, 255))
    limb(d, (450, 400), (500, 640), 70, (120, 70, 40, 255))
    d.rectangle([195, 660, 275, 840], fill=DARK)
    d.rectangle([325, 660, 405, 840], fill=DARK)  # short legs
    d.ellipse([170, 820, 290, 865], fill=DARK)
    d.ellipse([310, 820, 430, 865], fill=DARK)
    d.polygon([(240, 215), (360, 215), (300, 130)], fill=(150, 150, 160, 255))  # helmet
    return im


def goblin():
    im = canvas()
    d = ImageDraw.Draw(im)
    green = (90, 160, 70, 255)
    humanoid(d, head_r=65, shoulder=70, hip=45, body_col=(110, 80, 50, 255))
    d.polygon([(245, 125), (60, 60), (250, 175)], fill=green)  # big ears
    d.polygon([(355, 125), (540, 60), (350, 175)], fill=green)
    d.ellipse([235, 60, 365, 190], fill=green)
    return im


def astronaut():
    im = canvas()
    d = ImageDraw.Draw(im)
    wh = (235, 235, 240, 255)
    d.ellipse([200, 30, 400, 230], fill=wh)
    d.ellipse([235, 70, 365, 190], fill=(40, 50, 80, 255))
    d.rounded_rectangle([150, 220, 450, 560], 60, fill=wh)
    d.rounded_rectangle([370, 250, 470, 520], 40, fill=(200, 200, 210, 255))  # backpack visible? no: arm
    limb(d, (175, 270), (115, 540), 90, wh)
    limb(d, (425, 270), (485, 540), 90, wh)
    limb(d, (235, 550), (225, 820), 100, wh)
    limb(d, (365, 550), (375, 820), 100, wh)
    d.rounded_rectangle([160, 810, 285, 870], 20, fill=(120, 120, 130, 255))
    d.rounded_rectangle([315, 810, 440, 870], 20, fill=(120, 120, 130, 255))
    return im


def child_dress():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.ellipse([225, 60, 375, 210], fill=SKIN)
    d.polygon([(250, 230), (350, 230), (470, 700), (130, 700)], fill=(220, 80, 120, 255))  # dress to the shins
    limb(d, (255, 250), (190, 500), 32, SKIN)
    limb(d, (345, 250), (410, 500), 32, SKIN)
    d.rectangle([270, 200, 330, 240], fill=SKIN)
    limb(d, (260, 700), (260, 830), 34, SKIN)
    limb(d, (340, 700), (340, 830), 34, SKIN)
    d.ellipse([225, 815, 290, 850], fill=DARK)
    d.ellipse([310, 815, 375, 850], fill=DARK)
    return im


def long_dress():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.ellipse([235, 50, 365, 180], fill=SKIN)
    d.rectangle([280, 170, 320, 210], fill=SKIN)
    d.polygon([(240, 205), (360, 205), (450, 860), (150, 860)], fill=(90, 50, 150, 255))  # gown to the floor
    limb(d, (250, 220), (180, 480), 30, SKIN)
    limb(d, (350, 220), (420, 480), 30, SKIN)
    return im


def sword():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d, arms="A")
    d.rectangle([455, 200, 470, 560], fill=(200, 200, 210, 255))  # sword held up at the right hand
    d.rectangle([430, 540, 495, 555], fill=(120, 80, 40, 255))
    return im


def staff():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d, arms="A")
    d.rectangle([130, 20, 145, 880], fill=(120, 80, 40, 255))  # staff taller than the figure
    d.ellipse([110, 0, 165, 55], fill=(80, 200, 255, 255))
    return im


def hands_on_hips():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d, arms="hips")
    return im


def cape():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.polygon([(200, 230), (400, 230), (520, 870), (80, 870)], fill=(160, 20, 30, 255))  # cape behind, to the floor
    humanoid(d)
    return im


def tail():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d)
    pts = [(330, 520), (420, 600), (500, 700), (560, 820), (580, 870)]
    for a, b in zip(pts, pts[1:]):
        limb(d, a, b, 60, (200, 120, 40, 255))
    return im


def stick():
    im = canvas()
    d = ImageDraw.Draw(im)
    c = (20, 20, 20, 255)
    d.ellipse([260, 40, 340, 120], fill=c)
    limb(d, (300, 120), (300, 480), 10, c)
    limb(d, (300, 180), (180, 400), 10, c)
    limb(d, (300, 180), (420, 400), 10, c)
    limb(d, (300, 480), (220, 860), 10, c)
    limb(d, (300, 480), (380, 860), 10, c)
    return im


def y_pose():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d, top=230, arms="Y", scale=0.8)
    return im


def t_pose():
    im = Image.new("RGBA", (900, 900), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    humanoid(d, cx=450, arms="T", scale=0.95)
    return im


def round_base():
    im = canvas()
    d = ImageDraw.Draw(im)
    humanoid(d, top=20, scale=0.92)
    d.ellipse([120, 820, 480, 890], fill=(90, 90, 90, 255))  # round display base
    return im


def white_bg_figure():
    im = canvas((255, 255, 255))
    d = ImageDraw.Draw(im)
    humanoid(d, arms="A")
    return im


# ---------- must be REFUSED
def office_chair():
    im = canvas()
    d = ImageDraw.Draw(im)
    k = (40, 40, 45, 255)
    d.rounded_rectangle([200, 60, 400, 420], 60, fill=k)  # backrest (narrower than seat)
    d.rectangle([140, 420, 460, 480], fill=k)  # seat
    d.rectangle([120, 330, 150, 440], fill=k)
    d.rectangle([450, 330, 480, 440], fill=k)  # armrests
    d.rectangle([290, 480, 310, 740], fill=(150, 150, 150, 255))
    for x in (120, 300, 480):
        d.line([(300, 740), (x, 820)], fill=k, width=24)
        d.ellipse([x - 25, 810, x + 25, 860], fill=k)
    return im


def floor_lamp():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.polygon([(200, 200), (400, 200), (350, 60), (250, 60)], fill=(240, 220, 150, 255))
    d.rectangle([292, 200, 308, 820], fill=(60, 60, 60, 255))
    d.ellipse([200, 810, 400, 870], fill=(60, 60, 60, 255))
    return im


def tree():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.rectangle([265, 480, 335, 870], fill=(110, 70, 40, 255))
    d.ellipse([120, 40, 480, 520], fill=(40, 140, 50, 255))
    return im


def pine_tree():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.rectangle([275, 760, 325, 870], fill=(110, 70, 40, 255))
    for i, y in enumerate((60, 260, 460)):
        w = 100 + 60 * i
        d.polygon([(300, y), (300 - w, y + 320), (300 + w, y + 320)], fill=(30, 110, 50, 255))
    return im


def coat_stand():
    im = canvas()
    d = ImageDraw.Draw(im)
    k = (90, 60, 40, 255)
    d.rectangle([292, 40, 308, 800], fill=k)
    limb(d, (300, 80), (240, 40), 12, k)
    limb(d, (300, 80), (360, 40), 12, k)
    d.polygon([(240, 110), (360, 110), (400, 500), (200, 500)], fill=(70, 70, 110, 255))  # coat hanging
    d.ellipse([265, 80, 335, 130], fill=(70, 70, 110, 255))  # hood
    for x in (180, 420):
        d.line([(300, 780), (x, 870)], fill=k, width=20)
    return im


def snowman():
    im = canvas()
    d = ImageDraw.Draw(im)
    w = (245, 245, 250, 255)
    d.ellipse([150, 520, 450, 870], fill=w)
    d.ellipse([195, 300, 405, 540], fill=w)
    d.ellipse([230, 140, 370, 320], fill=w)
    d.rectangle([250, 60, 350, 150], fill=DARK)
    d.rectangle([220, 140, 380, 160], fill=DARK)
    limb(d, (200, 400), (90, 300), 10, (110, 70, 40, 255))
    limb(d, (400, 400), (510, 300), 10, (110, 70, 40, 255))
    return im


def bird():
    im = canvas()
    d = ImageDraw.Draw(im)  # a standing bird from the front (penguin/owl)
    d.ellipse([170, 200, 430, 780], fill=(40, 40, 50, 255))
    d.ellipse([215, 80, 385, 260], fill=(40, 40, 50, 255))
    d.ellipse([220, 300, 380, 740], fill=(245, 245, 245, 255))
    d.polygon([(175, 350), (110, 620), (185, 560)], fill=(40, 40, 50, 255))
    d.polygon([(425, 350), (490, 620), (415, 560)], fill=(40, 40, 50, 255))
    d.ellipse([210, 770, 285, 810], fill=(240, 160, 40, 255))
    d.ellipse([315, 770, 390, 810], fill=(240, 160, 40, 255))
    return im


def bird_side():
    im = Image.new("RGBA", (900, 600), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse([250, 150, 650, 400], fill=(180, 60, 40, 255))
    d.ellipse([560, 80, 720, 230], fill=(180, 60, 40, 255))
    d.polygon([(710, 140), (800, 165), (710, 180)], fill=(240, 180, 40, 255))
    d.polygon([(260, 250), (80, 200), (100, 300)], fill=(180, 60, 40, 255))
    limb(d, (420, 380), (420, 560), 10, (200, 150, 40, 255))
    limb(d, (480, 380), (480, 560), 10, (200, 150, 40, 255))
    return im


def dog_standing_side():
    im = Image.new("RGBA", (900, 600), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    c = (160, 110, 60, 255)
    d.rounded_rectangle([200, 200, 650, 340], 60, fill=c)
    d.ellipse([600, 100, 760, 240], fill=c)
    for x in (230, 300, 540, 610):
        d.rectangle([x, 320, x + 40, 560], fill=c)
    limb(d, (210, 230), (100, 140), 20, c)
    return im


def dog_front():
    im = canvas()
    d = ImageDraw.Draw(im)
    c = (160, 110, 60, 255)
    d.ellipse([190, 330, 410, 700], fill=c)  # chest seen from front
    d.ellipse([215, 180, 385, 360], fill=c)
    d.ellipse([180, 200, 240, 330], fill=(100, 70, 40, 255))
    d.ellipse([360, 200, 420, 330], fill=(100, 70, 40, 255))
    d.rectangle([220, 600, 265, 860], fill=c)
    d.rectangle([335, 600, 380, 860], fill=c)
    return im


def dog_upright():
    im = canvas()
    d = ImageDraw.Draw(im)
    c = (160, 110, 60, 255)  # a dog standing on hind legs, begging
    d.ellipse([200, 300, 400, 650], fill=c)
    d.ellipse([220, 150, 380, 320], fill=c)
    d.polygon([(300, 230), (300, 290), (470, 270)], fill=c)  # snout to one side
    limb(d, (240, 380), (260, 470), 30, c)
    limb(d, (360, 380), (340, 470), 30, c)
    d.rectangle([215, 600, 270, 840], fill=c)
    d.rectangle([330, 600, 385, 840], fill=c)
    d.ellipse([195, 820, 290, 860], fill=c)
    d.ellipse([310, 820, 405, 860], fill=c)
    return im


def car_front():
    im = Image.new("RGBA", (900, 600), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([120, 250, 780, 480], 40, fill=(200, 30, 30, 255))
    d.polygon([(250, 250), (650, 250), (600, 120), (300, 120)], fill=(200, 30, 30, 255))
    d.rectangle([140, 470, 240, 560], fill=DARK)
    d.rectangle([660, 470, 760, 560], fill=DARK)
    return im


def bottle():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.rectangle([270, 40, 330, 120], fill=(30, 120, 60, 255))
    d.polygon([(270, 120), (330, 120), (400, 280), (200, 280)], fill=(30, 120, 60, 255))
    d.rounded_rectangle([200, 270, 400, 870], 30, fill=(30, 120, 60, 255))
    return im


def two_people():
    im = Image.new("RGBA", (1000, 900), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    humanoid(d, cx=280, scale=0.9)
    humanoid(d, cx=700, scale=0.9, body_col=(160, 60, 60, 255))
    return im


def two_people_touching():
    im = Image.new("RGBA", (800, 900), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    humanoid(d, cx=250, scale=0.9)
    humanoid(d, cx=530, scale=0.9, body_col=(160, 60, 60, 255))
    return im


def side_view():
    im = canvas()
    d = ImageDraw.Draw(im)  # profile facing right
    d.ellipse([240, 40, 360, 160], fill=SKIN)
    d.polygon([(355, 95), (380, 110), (355, 120)], fill=SKIN)
    d.rounded_rectangle([245, 170, 355, 470], 30, fill=CLOTH)
    limb(d, (300, 190), (320, 450), 34, CLOTH)
    limb(d, (290, 470), (285, 830), 50, DARK)
    limb(d, (310, 470), (315, 830), 44, DARK)
    d.polygon([(270, 820), (390, 830), (390, 860), (270, 860)], fill=DARK)
    return im


def side_view_walking():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.ellipse([240, 40, 360, 160], fill=SKIN)
    d.polygon([(355, 95), (385, 110), (355, 120)], fill=SKIN)
    d.rounded_rectangle([245, 170, 355, 470], 30, fill=CLOTH)
    limb(d, (300, 190), (380, 430), 34, CLOTH)
    limb(d, (300, 190), (220, 430), 34, CLOTH)
    limb(d, (300, 470), (220, 830), 46, DARK)
    limb(d, (300, 470), (380, 830), 46, DARK)
    d.polygon([(200, 820), (290, 825), (290, 860), (200, 860)], fill=DARK)
    d.polygon([(370, 820), (460, 825), (460, 860), (370, 860)], fill=DARK)
    return im


def three_quarter():
    im = canvas()
    d = ImageDraw.Draw(im)
    # body squashed horizontally and shifted: near side wide, far side narrow; head offset to the right
    d.ellipse([260, 50, 380, 170], fill=SKIN)
    d.polygon([(375, 100), (395, 118), (372, 128)], fill=SKIN)
    d.polygon([(215, 190), (365, 190), (345, 460), (235, 460)], fill=CLOTH)
    limb(d, (225, 205), (190, 460), 34, CLOTH)
    limb(d, (360, 205), (375, 440), 26, CLOTH)
    limb(d, (255, 460), (235, 830), 46, DARK)
    limb(d, (325, 460), (335, 820), 38, DARK)
    d.polygon([(210, 820), (300, 830), (300, 860), (210, 860)], fill=DARK)
    d.polygon([(320, 805), (400, 815), (400, 845), (320, 845)], fill=DARK)
    return im


def empty():
    return canvas()


def blank_white():
    return canvas((255, 255, 255))


def cut_at_knees():
    im = Image.new("RGBA", (W, 600), (0, 0, 0, 0))
    big = canvas()
    humanoid(ImageDraw.Draw(big), arms="A")
    im.paste(big.crop((0, 0, W, 600)), (0, 0))
    return im


def bust():
    im = Image.new("RGBA", (W, 500), (0, 0, 0, 0))
    big = canvas()
    humanoid(ImageDraw.Draw(big))
    im.paste(big.crop((0, 0, W, 500)))
    return im


def house():
    im = canvas()
    d = ImageDraw.Draw(im)
    d.polygon([(100, 350), (300, 100), (500, 350)], fill=(150, 40, 40, 255))
    d.rectangle([140, 350, 460, 870], fill=(200, 180, 140, 255))
    d.rectangle([260, 650, 340, 870], fill=(0, 0, 0, 0))  # door gap
    return im


def table_lamp_person_like():
    # a ceramic vase with two handles and a foot
    im = canvas()
    d = ImageDraw.Draw(im)
    d.ellipse([180, 200, 420, 700], fill=(60, 120, 180, 255))
    d.rectangle([260, 80, 340, 220], fill=(60, 120, 180, 255))
    limb(d, (200, 300), (140, 450), 30, (60, 120, 180, 255))
    limb(d, (400, 300), (460, 450), 30, (60, 120, 180, 255))
    d.rectangle([230, 690, 370, 860], fill=(60, 120, 180, 255))
    return im


# humanoids the gate must let through (each was tried as a user's front picture)
PASS = [
    robot,
    dwarf,
    goblin,
    astronaut,
    child_dress,
    sword,
    staff,
    hands_on_hips,
    tail,
    stick,
    y_pose,
    t_pose,
    round_base,
    white_bg_figure,
]
# things the gate (or the picture's reading before it) must refuse
REFUSE = [
    office_chair,
    floor_lamp,
    tree,
    pine_tree,
    coat_stand,
    snowman,
    bird,
    bird_side,
    dog_standing_side,
    car_front,
    bottle,
    side_view,
    side_view_walking,
    three_quarter,
    bust,
    house,
    table_lamp_person_like,
]
