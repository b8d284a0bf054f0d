"""Untrusted image bytes -> pixels, with the size known before any decoder sees the file.

Every image is first *probed*: a few hundred bytes of its header are parsed here (PNG, JPEG, WebP)
or by Pillow's header reader (GIF, BMP, TIFF, PNM), and its dimensions are checked against
MAX_IMAGE_PIXELS. Only then is it decoded, by torchvision's C decoders for the common formats
(fast: the 60,000 CIFAR-10 JPEGs) or by Pillow for the rest. A header that cannot be read
refuses the image; nothing is decoded "to see what happens".

Colour rule (what a viewer shows): palette images get their palette's colours, 16-bit samples
are scaled to 8 bits, CMYK becomes RGB, and transparent pixels are composited onto white, as a
web page shows them. Greyscale sources (with or without alpha) decode to one channel, all others
to three; sources.py makes a dataset RGB unless every image in it is greyscale. Animated GIF,
PNG and WebP files give their first frame, as torchvision's ImageFolder (Pillow) does.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torchvision.io import ImageReadMode, decode_jpeg, decode_png, decode_webp

from longtail.errors import LongtailError

# torchvision 0.29 points to TorchCodec for decoding; its still-supported decoders are what the
# project uses (no extra dependency), so the notice is silenced here and not shown to users.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

# 4096x4096 is far above any small-image dataset and keeps one decoded image under 64 MiB
# (RGBA, 8 bits) or 128 MiB (16 bits).
MAX_IMAGE_PIXELS = 4096 * 4096
# A progressive JPEG has about 10 scans; each scan is a pass over the whole image, so thousands of
# tiny scans in a small file make a CPU bomb (libjpeg-turbo's own fuzzers cap at 500).
MAX_JPEG_SCANS = 500
# Real files have a handful of chunks or markers before the pixels; walking millions of empty ones
# would only burn time.
MAX_HEADER_SEGMENTS = 1000

# What each decoder is allowed to be: Pillow opens only these, so no other plugin (EPS calls
# Ghostscript, ICO holds many images, ...) ever sees a dataset file.
_PIL_FORMATS = {"gif": ["GIF"], "bmp": ["BMP"], "tiff": ["TIFF"], "pnm": ["PPM"], "webp": ["WEBP"]}
KINDS = "PNG, JPEG, GIF, BMP, WebP, TIFF or PNM"


@dataclass(frozen=True)
class Probe:
    """What the header says: enough to bound memory and choose how to decode."""

    kind: str  # png, jpeg, webp, gif, bmp, tiff, pnm
    width: int
    height: int
    gray: bool  # decodes to one channel
    alpha: bool  # has transparency to composite onto white
    via_pil: bool = False  # decoded by Pillow (formats torchvision lacks, animated WebP)


def shown(text: str) -> str:
    """``text`` safe for a one-line message: control characters and undecodable bytes escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    if "\udc80" <= c <= "\udcff":  # a byte of a file name that is not UTF-8 (surrogateescape)
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c.encode("unicode_escape").decode("ascii")


def probe(name: str, data: bytes) -> Probe:
    """Read the header of ``data``; refuse (naming ``name``) what is unreadable or too large."""
    if not data:
        raise LongtailError(f"cannot decode image {shown(name)}: the file is empty")
    kind = _sniff(data)
    if kind is None:
        raise LongtailError(f"cannot decode image {shown(name)}: not a {KINDS} file")
    try:
        p = {"png": _probe_png, "jpeg": _probe_jpeg, "webp": _probe_webp}.get(kind, _probe_pil)(data, kind)
    except _BadHeader as e:
        raise LongtailError(f"cannot read the header of image {shown(name)}: {e}") from None
    except MemoryError:
        raise LongtailError(f"ran out of memory reading the header of image {shown(name)}") from None
    if p.width * p.height > MAX_IMAGE_PIXELS:
        raise LongtailError(f"{shown(name)} declares {p.width}x{p.height} px, more than the "
                            f"{MAX_IMAGE_PIXELS} pixel limit")
    return p


def decode(name: str, data: bytes, p: Probe) -> torch.Tensor:
    """Pixels of a probed image: uint8 (1, H, W) if ``p.gray`` else (3, H, W)."""
    try:
        img = _decode_pil(data, p) if p.via_pil else _decode_torchvision(data, p)
    except LongtailError:
        raise
    except _BadHeader as e:
        raise LongtailError(f"cannot decode image {shown(name)}: {e}") from None
    except MemoryError:
        raise LongtailError(f"ran out of memory decoding image {shown(name)}") from None
    except Exception as e:  # noqa: BLE001 - see below
        # Decoders of hostile bytes fail in many ways (RuntimeError from torchvision; OSError,
        # SyntaxError, struct.error, ... from Pillow). Each one refuses this image, never carries on.
        raise LongtailError(f"cannot decode image {shown(name)}: {_reason(e)}") from None
    want = (1 if p.gray else 3, p.height, p.width)
    if tuple(img.shape) != want:
        raise LongtailError(f"cannot decode image {shown(name)}: it decoded to {tuple(img.shape)}, "
                            f"its header says {want}")
    return img


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what libjpeg and libpng print straight to file descriptor 2 while decoding.

    Their warnings ("Corrupt JPEG data: 2 extraneous bytes", "libpng warning: iCCP") bypass
    Python, so a failing load would not end in one line; the error that matters is raised
    as a LongtailError after stderr is back.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


# --- sniffing and headers ------------------------------------------------------------------------


class _BadHeader(Exception):
    """A header that cannot be read; the text says what was wrong."""


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "pnm"
    return None


def _probe_png(data: bytes, kind: str) -> Probe:
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack(">I", data[8:12])[0] != 13:
        raise _BadHeader("no PNG image header (IHDR)")
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    if w == 0 or h == 0:
        raise _BadHeader(f"it declares {w}x{h} px")
    if color not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16):
        raise _BadHeader(f"unknown PNG colour type {color} / bit depth {depth}")
    # tRNS (transparency for palette, grey or RGB images) must come before the pixel data.
    trns, pos = False, 33
    for _ in range(MAX_HEADER_SEGMENTS):
        if pos + 8 > len(data):
            raise _BadHeader("the file ends before its pixel data")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if ctype == b"IDAT":
            break
        trns |= ctype == b"tRNS"
        pos += 12 + length
    else:
        raise _BadHeader(f"more than {MAX_HEADER_SEGMENTS} chunks before the pixel data")
    return Probe(kind, w, h, gray=color in (0, 4), alpha=color in (4, 6) or trns)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _probe_jpeg(data: bytes, kind: str) -> Probe:
    # Walk the marker segments to the first frame header (SOFn), as libjpeg does; the decoder
    # refuses a second one, so the size read here is the size it will allocate.
    pos, n = 2, len(data)
    for _ in range(MAX_HEADER_SEGMENTS):
        if pos >= n:
            break
        # libjpeg skips stray bytes here to resynchronise, so it could find a different frame
        # header than this walk; such a file is refused rather than guessed at.
        if data[pos] != 0xFF:
            raise _BadHeader("stray bytes between marker segments before the frame header")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        if marker == 0x00:
            raise _BadHeader("stray bytes between marker segments before the frame header")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 1
            continue
        if marker in (0xD9, 0xDA):
            raise _BadHeader("no frame header before the image data")
        if pos + 3 > n:
            break
        length = (data[pos + 1] << 8) | data[pos + 2]
        if length < 2:
            raise _BadHeader("a marker segment has an impossible length")
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                break
            h, w, comps = struct.unpack(">HHB", data[pos + 4:pos + 9])
            if w == 0 or h == 0:
                raise _BadHeader(f"it declares {w}x{h} px (a height given later, by DNL, is not supported)")
            if comps not in (1, 3, 4):
                raise _BadHeader(f"{comps} colour components (1 grey, 3 colour or 4 CMYK are read)")
            scans = data.count(b"\xff\xda")  # 0xFF 0xDA cannot occur inside entropy-coded data
            if scans > MAX_JPEG_SCANS:
                raise _BadHeader(f"{scans} scans, more than the {MAX_JPEG_SCANS} a real JPEG needs")
            return Probe(kind, w, h, gray=comps == 1, alpha=False)
        pos += 1 + length
    else:
        raise _BadHeader(f"more than {MAX_HEADER_SEGMENTS} segments before the frame header")
    raise _BadHeader("the file ends before the frame header")


def _probe_webp(data: bytes, kind: str) -> Probe:
    if len(data) < 30:
        raise _BadHeader("the file ends inside the WebP header")
    fourcc = data[12:16]
    if fourcc == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _BadHeader("no VP8 start code")
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
        alpha = animated = False
    elif fourcc == b"VP8L":
        if data[20] != 0x2F:
            raise _BadHeader("no VP8L signature")
        bits = struct.unpack("<I", data[21:25])[0]
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha, animated = bool(bits >> 28 & 1), False
    elif fourcc == b"VP8X":
        flags = data[20]
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        alpha, animated = bool(flags & 0x10), bool(flags & 0x02)
    else:
        raise _BadHeader(f"unknown WebP chunk {fourcc!r}")
    if w == 0 or h == 0:
        raise _BadHeader(f"it declares {w}x{h} px")
    # torchvision reads still WebP only; Pillow gives an animation's first frame. Its animation
    # decoder allocates two canvases up front, which the pixel limit (checked by the caller
    # before any decoding) keeps small.
    return Probe(kind, w, h, gray=False, alpha=alpha or animated, via_pil=animated)


_PIL_GRAY = {"1", "L", "LA", "La", "I;16", "I;16L", "I;16B", "I;16N"}
_PIL_COLOUR = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


@contextmanager
def _pil_image(data: bytes, kind: str):
    """Pillow's header reader, limited to ``kind``'s plugin, its warnings kept off stderr."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning, "Corrupt EXIF data", ...
        try:
            im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS[kind])
        except Image.DecompressionBombError:
            raise _BadHeader(f"it declares more than {Image.MAX_IMAGE_PIXELS * 2} px, far above the "
                             f"{MAX_IMAGE_PIXELS} pixel limit") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read a header refuses the image
            raise _BadHeader(_reason(e)) from None
        with im:
            yield im


def _probe_pil(data: bytes, kind: str) -> Probe:
    with _pil_image(data, kind) as im:
        try:
            w, h = im.size
            mode = im.mode
            transparent = "transparency" in im.info
            # A tiled TIFF is decoded a tile at a time; a tile may declare far more than the image.
            tw, th = (im.tag_v2.get(322, 0), im.tag_v2.get(323, 0)) if kind == "tiff" else (0, 0)
        except Exception as e:  # noqa: BLE001 - a header Pillow cannot describe refuses the image
            raise _BadHeader(_reason(e)) from None
        if isinstance(tw, int) and isinstance(th, int) and tw * th > MAX_IMAGE_PIXELS:
            raise _BadHeader(f"its tiles declare {tw}x{th} px, more than the {MAX_IMAGE_PIXELS} pixel limit")
    if w <= 0 or h <= 0:
        raise _BadHeader(f"it declares {w}x{h} px")
    if mode == "I" and kind == "pnm":
        mode = "I;16"  # Pillow widens 9- to 16-bit PGM samples to 0..65535 in 32-bit mode I
    if mode not in _PIL_GRAY and mode not in _PIL_COLOUR:
        raise _BadHeader(f"pixel mode {mode} has no single way to show it as 8-bit colour")
    alpha = mode in {"LA", "La", "PA", "RGBA", "RGBa"} or transparent
    return Probe(kind, w, h, gray=mode in _PIL_GRAY, alpha=alpha, via_pil=True)


# --- decoding ------------------------------------------------------------------------------------


def _decode_torchvision(data: bytes, p: Probe) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if p.kind == "jpeg":
        # RGB mode converts CMYK/YCCK to colour as a viewer does; JPEG has no alpha.
        return decode_jpeg(raw, mode=ImageReadMode.GRAY if p.gray else ImageReadMode.RGB)
    if p.kind == "webp":
        return _opaque(decode_webp(raw, mode=ImageReadMode.RGB_ALPHA if p.alpha else ImageReadMode.RGB))
    # PNG. Alpha modes only where there is alpha: torchvision's RGB_ALPHA of a palette image
    # without tRNS gives scrambled colours.
    _check_png_pixels(data)
    if p.gray:
        mode = ImageReadMode.GRAY_ALPHA if p.alpha else ImageReadMode.GRAY
    else:
        mode = ImageReadMode.RGB_ALPHA if p.alpha else ImageReadMode.RGB
    img = decode_png(raw, mode=mode)
    if img.dtype != torch.uint8:  # 16-bit samples come back as uint16
        img = ((img.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    return _opaque(img)


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_INFLATE_STEP = 1 << 20


def _check_png_pixels(data: bytes) -> None:
    """Refuse a PNG whose pixel data libpng would reject while torchvision reads its rows.

    torchvision 0.29's decode_png crashes the process (SIGSEGV) on any libpng error raised after
    the header: a bad IDAT CRC, a damaged or short deflate stream, a bad row filter, IDAT chunks
    split by another chunk. Errors in the header are reported cleanly. So the stream is checked
    here first, inflating it in bounded steps without keeping the output.
    """
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = _PNG_CHANNELS[color] * depth
    segments, start = [], 0  # (first filter byte, end, row stride) per (interlace pass of the) image
    for x0, y0, dx, dy in _ADAM7 if interlace == 1 else ((0, 0, 1, 1),):
        pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
        if pw and ph:
            stride = 1 + (pw * bits + 7) // 8
            segments.append((start, start + ph * stride, stride))
            start += ph * stride
    expected = start
    pos = 33
    while struct.unpack(">4s", data[pos + 4:pos + 8])[0] != b"IDAT":  # _probe_png found it
        pos += 12 + struct.unpack(">I", data[pos:pos + 4])[0]
    inflater, produced = zlib.decompressobj(), 0
    while not inflater.eof:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8]) if pos + 8 <= len(data) else (0, b"")
        if kind != b"IDAT":
            raise _BadHeader("its pixel data (IDAT) ends before the image does")
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise _BadHeader("its pixel data (IDAT) is damaged (CRC mismatch or cut short)")
        pos += 12 + length
        while body and not inflater.eof:
            try:
                out = inflater.decompress(body, _INFLATE_STEP)
            except zlib.error as e:
                raise _BadHeader(f"its pixel data is damaged ({e})") from None
            for first, end, stride in segments:  # every row starts with a filter type 0..4
                lo, hi = max(first, produced), min(end, produced + len(out))
                if lo < hi:
                    lo = first + (lo - first + stride - 1) // stride * stride
                    if lo < hi and max(out[lo - produced:hi - produced:stride]) > 4:
                        raise _BadHeader("its pixel data has an invalid row filter")
            produced += len(out)
            if produced > expected + _INFLATE_STEP:
                raise _BadHeader("its pixel data is larger than its size needs")
            body = inflater.unconsumed_tail
    if produced < expected:
        raise _BadHeader(f"its pixel data holds {produced} of the {expected} bytes its size needs")


def _decode_pil(data: bytes, p: Probe) -> torch.Tensor:
    import numpy as np

    with _pil_image(data, p.kind) as im:
        if im.size != (p.width, p.height):  # same bytes, same reader: never expected
            raise _BadHeader("its header changed between two reads")
        im.seek(0)  # the first frame of an animation
        if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit grey (mode I only from PNM, see _probe_pil)
            wide = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
            return torch.from_numpy((wide * 255 + 32767) // 65535).to(torch.uint8).reshape(1, p.height, p.width)
        target = ("LA" if p.alpha else "L") if p.gray else ("RGBA" if p.alpha else "RGB")
        arr = np.asarray(im.convert(target))
    img = torch.from_numpy(arr.copy()).reshape(p.height, p.width, -1).permute(2, 0, 1)
    return _opaque(img.contiguous())


def _opaque(img: torch.Tensor) -> torch.Tensor:
    """Drop an alpha channel by compositing onto white (what a page behind the image shows)."""
    if img.shape[0] not in (2, 4):
        return img
    colour, alpha = img[:-1], img[-1:]
    if bool((alpha == 255).all()):
        return colour.contiguous()
    a = alpha.to(torch.int32)
    return ((colour.to(torch.int32) * a + 255 * (255 - a) + 127) // 255).to(torch.uint8)


_SOURCE_PREFIX = re.compile(r"^[\w()~:<>]+, \S+:\d+, ")


def _reason(e: BaseException) -> str:
    """The first line of a library's message, without torchvision's 'function, file:line, ' prefix."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return shown(_SOURCE_PREFIX.sub("", text))[:200]
