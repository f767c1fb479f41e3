using System.Globalization;
using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Io;

/// <summary>Offsets, lengths and pattern bytes of qemu-io commands, with qemu-io's messages on failure.</summary>
internal static class IoArguments
{
    /// <summary>The largest request qemu accepts (INT_MAX rounded down to 512).</summary>
    public const long MaxRequestBytes = 2147483136;

    /// <summary>The pattern qemu-io writes when none is given.</summary>
    public const byte DefaultWritePattern = 0xcd;

    /// <summary>Parses an offset or length such as <c>4k</c>; prints qemu-io's parsing error and returns null when invalid.</summary>
    public static long? ParseNumber(string text, TextWriter output)
    {
        if (SizeParser.TryParse(text, out long value, out var error))
        {
            return value;
        }
        output.WriteLine(error == SizeParseError.TooLarge
            ? $"Parsing error: argument too large -- {text}"
            : $"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {text}");
        return null;
    }

    /// <summary>Parses a request length: a number no larger than <see cref="MaxRequestBytes"/>.</summary>
    public static int? ParseLength(string text, TextWriter output)
    {
        long? length = ParseNumber(text, output);
        if (length is null)
        {
            return null;
        }
        if (length > MaxRequestBytes)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"length cannot exceed {MaxRequestBytes}, given {text}"));
            return null;
        }
        return (int)length.Value;
    }

    /// <summary>Reads a pattern byte as qemu-io does, with C's <c>strtol(text, &amp;end, 0)</c> (decimal, <c>0x</c> hex or <c>0</c> octal), whole string, 0 to 255.</summary>
    /// <exception cref="CliException">Not a pattern byte; qemu-io's message, which it prints on stdout.</exception>
    public static byte ReadPattern(string text) =>
        CNumber.TryParseSigned(text, 0, byte.MaxValue, out long value) ? (byte)value : throw new CliException($"{text} is not a valid pattern byte");

    /// <summary>Parses <c>sleep</c>'s milliseconds as qemu-io does (<c>strtol(text, &amp;end, 0)</c>, whole string, not negative); larger than <see cref="int.MaxValue"/> is refused.</summary>
    public static int? ParseMilliseconds(string text, TextWriter output)
    {
        if (CNumber.TryParseSigned(text, 0, int.MaxValue, out long value))
        {
            return (int)value;
        }
        output.WriteLine($"{text} is not a valid number");
        return null;
    }
}
