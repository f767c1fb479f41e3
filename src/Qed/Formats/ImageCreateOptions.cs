namespace Qed.Formats;

/// <summary>What <see cref="ImageFormat.Create"/> writes: the options of <c>qemu-img create</c>, by qemu-img's names.</summary>
public sealed record ImageCreateOptions
{
    /// <summary>Virtual size in bytes (qemu-img's <c>size</c>); formats round it up to a multiple of 512 as qemu-img does.</summary>
    public required long Size { get; init; }

    /// <summary>Backing file name (<c>backing_file</c>), stored verbatim; relative names resolve against the image's directory.</summary>
    public string? BackingFile { get; init; }

    /// <summary>Backing format (<c>backing_fmt</c>), as far as the format records it.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>The format's own numeric options by their qemu-img names (for QED <c>cluster_size</c> and <c>table_size</c>); missing ones take the format's defaults.</summary>
    public IReadOnlyDictionary<string, long> Settings { get; init; } = new Dictionary<string, long>();

    /// <summary>The format's text and on/off options by their qemu-img names, as given (for qcow2 <c>compat</c>, <c>lazy_refcounts</c>, <c>extended_l2</c>, <c>compression_type</c>); missing ones take the format's defaults.</summary>
    public IReadOnlyDictionary<string, string> TextSettings { get; init; } = new Dictionary<string, string>();
}

/// <summary>One option a format's <see cref="ImageFormat.Create"/> takes, as <c>qemu-img create -o help</c> lists it.</summary>
/// <param name="Name">qemu-img's name (<c>size</c>, <c>backing_file</c>, <c>cluster_size</c>, ...).</param>
/// <param name="Kind">What its value is.</param>
/// <param name="Help">The help line's description.</param>
/// <param name="AnnouncedDefault">The value qemu-img prints in its <c>Formatting ...</c> line when the option is not given, or null when it prints nothing.</param>
public sealed record ImageCreateOption(string Name, ImageCreateOptionKind Kind, string Help, string? AnnouncedDefault = null)
{
    /// <summary>The virtual size.</summary>
    public const string SizeName = "size";

    /// <summary>The backing file name.</summary>
    public const string BackingFileName = "backing_file";

    /// <summary>The backing file's format.</summary>
    public const string BackingFormatName = "backing_fmt";
}

/// <summary>What a creation option's value is.</summary>
public enum ImageCreateOptionKind
{
    /// <summary>A size in bytes (qemu-img's suffixes allowed): <c>&lt;size&gt;</c> in the help.</summary>
    Size,

    /// <summary>Text: <c>&lt;str&gt;</c> in the help.</summary>
    Text,

    /// <summary>An integer (C's notation: decimal, 0x hexadecimal, 0 octal, a sign): <c>&lt;num&gt;</c> in the help.</summary>
    Number,

    /// <summary>On or off (also yes/no, true/false, y/n): <c>&lt;bool (on/off)&gt;</c> in the help.</summary>
    Flag,
}
