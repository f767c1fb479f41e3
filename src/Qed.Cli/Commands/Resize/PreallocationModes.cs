using Qed.Formats;

namespace Qed.Cli.Commands.Resize;

/// <summary>qemu's preallocation modes for <c>qed resize --preallocation</c>, with qemu-img's refusals.</summary>
internal static class PreallocationModes
{
    /// <summary>No preallocation (the default).</summary>
    public const string Off = "off";

    /// <summary>Reads the option's argument as qemu-img does inside its getopt loop: one of qemu's four modes.</summary>
    /// <exception cref="CliException">Not a mode qemu knows.</exception>
    public static string Read(string mode) => mode is Off or "metadata" or "falloc" or "full"
        ? mode
        : throw new CliException($"Invalid preallocation mode '{mode}'");

    /// <summary>
    /// qemu's refusal of <paramref name="mode"/> (not off) for a grow of <paramref name="format"/>, or null when it is done:
    /// raw files take falloc and full (its file driver words the refusal of metadata differently), QED takes none.
    /// </summary>
    public static string? Refusal(ImageFormat format, string mode) => format == ImageFormats.Raw
        ? mode == "metadata" ? $"Unsupported preallocation mode: {mode}" : null
        : $"Unsupported preallocation mode '{mode}'";
}
