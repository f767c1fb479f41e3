using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Resize;

/// <summary>
/// The size argument of <c>qed resize</c> as qemu-img reads it: a leading '+' or '-' makes it relative, the rest is a
/// size (qemu's suffixes and fractions, <see cref="SizeParser"/>) up to 2^64 − 1. The arithmetic is qemu-img's: unsigned
/// 64-bit, then read as signed, so a size of 8 EiB or more ends up "not positive" as it does there.
/// </summary>
internal readonly record struct ResizeSize(int Direction, ulong Amount, string? Error)
{
    private const string Malformed = "Parameter 'size' expects a non-negative number below 2^64\n" +
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
        "and exabytes, respectively.";

    /// <summary>Reads <paramref name="text"/>; <see cref="Error"/> is qemu-img's message when it is not a size.</summary>
    public static ResizeSize Parse(string text)
    {
        int direction = text.Length > 0 ? text[0] switch { '+' => 1, '-' => -1, _ => 0 } : 0;
        string number = direction != 0 ? text[1..] : text;
        if (SizeParser.TryParse(number, out long value, out var error))
        {
            return new ResizeSize(direction, (ulong)value, null);
        }
        if (error == SizeParseError.Invalid)
        {
            return new ResizeSize(direction, 0, Malformed);
        }
        // Above long.MaxValue: qemu still takes it up to 2^64 - 1.
        return Unsigned(number) is { } large
            ? new ResizeSize(direction, large, null)
            : new ResizeSize(direction, 0, $"Value '{number}' is out of range for parameter 'size'");
    }

    /// <summary>The new size for an image of <paramref name="current"/> bytes, computed as qemu-img computes it (wrapping).</summary>
    public long Apply(long current) => Direction == 0
        ? unchecked((long)Amount)
        : unchecked((long)((ulong)current + Amount * (ulong)(long)Direction));

    /// <summary>The value of a well-formed size (as <see cref="SizeParser"/> accepts it) above long.MaxValue, or null from 2^64 on.</summary>
    private static ulong? Unsigned(string text)
    {
        int i = 0;
        while (i < text.Length && char.IsWhiteSpace(text[i]))
        {
            i++;
        }
        if (i < text.Length && text[i] == '+')
        {
            i++;
        }
        UInt128 whole = 0;
        double fraction = 0;
        bool hex = i + 1 < text.Length && text[i] == '0' && text[i + 1] is 'x' or 'X';
        i += hex ? 2 : 0;
        for (; i < text.Length && (hex ? Uri.IsHexDigit(text[i]) : char.IsAsciiDigit(text[i])); i++)
        {
            whole = whole * (hex ? 16u : 10u) + (uint)(char.IsAsciiDigit(text[i]) ? text[i] - '0' : (text[i] | 0x20) - 'a' + 10);
            if (whole > ulong.MaxValue)
            {
                return null;
            }
        }
        if (!hex && i < text.Length && text[i] == '.')
        {
            int start = i;
            for (i++; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
            }
            fraction = double.Parse("0" + text[start..i], System.Globalization.CultureInfo.InvariantCulture);
        }
        int shift = i < text.Length ? char.ToLowerInvariant(text[i]) switch
        {
            'k' => 10, 'm' => 20, 'g' => 30, 't' => 40, 'p' => 50, 'e' => 60, _ => 0,
        } : 0;
        UInt128 total = (whole << shift) + (UInt128)Math.Round(fraction * Math.Pow(2, shift), MidpointRounding.AwayFromZero);
        return total > ulong.MaxValue ? null : (ulong)total;
    }
}
