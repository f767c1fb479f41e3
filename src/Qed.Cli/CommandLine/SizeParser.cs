using System.Globalization;

namespace Qed.Cli.CommandLine;

/// <summary>
/// Parses sizes the way qemu-img and qemu-io accept them: decimal or <c>0x</c> hex, an optional
/// fraction (<c>1.5M</c>), and an optional suffix b, k, M, G, T, P or E (powers of 1024, any case).
/// The CLI's only size parser: <see cref="ParseArgument"/> words errors as qemu-img's size options do; qemu-io's
/// offsets (<c>IoArguments</c>) and <c>-o</c> values (<c>CreateParameters</c>) word them as those tools do.
/// </summary>
/// <remarks>
/// Rules observed from qemu-img 7.2: leading white space and '+' are allowed, '-' is not; a fraction
/// needs a multiplying suffix unless it is zero (<c>1.0</c> is 1, <c>1.5</c> is refused); the fractional
/// bytes are rounded to nearest (<c>0.9k</c> is 922); hex takes no fraction; nothing may follow the suffix.
/// </remarks>
internal static class SizeParser
{
    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says why.</summary>
    public static bool TryParse(string text, out long value, out SizeParseError error)
    {
        error = Parse(text, out value);
        return error == SizeParseError.None;
    }

    /// <summary>
    /// Parses the size argument of an option as qemu-img's <c>cvtnum</c> does, with its two messages:
    /// <c>Invalid NAME specified. You may use k, M, ...</c> and <c>Invalid NAME specified. Must be between 0 and MAX.</c>
    /// </summary>
    /// <param name="text">The argument.</param>
    /// <param name="name">What the size is, as qemu-img names it (<c>image size</c>, <c>buffer size</c>, <c>offset</c>).</param>
    /// <param name="maximum">The largest value allowed.</param>
    /// <exception cref="CliException">Not a size, or above <paramref name="maximum"/>.</exception>
    public static long ParseArgument(string text, string name, long maximum = long.MaxValue)
    {
        if (TryParse(text, out long value, out var error) && value <= maximum)
        {
            return value;
        }
        throw new CliException(error == SizeParseError.Invalid
            ? $"Invalid {name} specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes."
            : $"Invalid {name} specified. Must be between 0 and {maximum}.");
    }

    /// <summary>The multiplier of a size suffix letter, or 0 when the letter is not a suffix.</summary>
    private static ulong SuffixMultiplier(char suffix) => char.ToLowerInvariant(suffix) switch
    {
        'b' => 1,
        'k' => 1UL << 10,
        'm' => 1UL << 20,
        'g' => 1UL << 30,
        't' => 1UL << 40,
        'p' => 1UL << 50,
        'e' => 1UL << 60,
        _ => 0,
    };

    private static SizeParseError Parse(string text, out long value)
    {
        value = 0;
        int i = 0;
        while (i < text.Length && IsCSpace(text[i]))
        {
            i++;
        }
        if (i < text.Length && text[i] == '+')
        {
            i++;
        }

        UInt128 whole = 0;
        double fraction = 0;
        bool overflow = false;
        bool hex = i + 2 < text.Length && text[i] == '0' && (text[i + 1] is 'x' or 'X') && Uri.IsHexDigit(text[i + 2]);
        if (hex)
        {
            i += 2;
            while (i < text.Length && Uri.IsHexDigit(text[i]))
            {
                whole = Accumulate(whole, 16, (uint)HexValue(text[i]), ref overflow);
                i++;
            }
        }
        else
        {
            int digitsStart = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                whole = Accumulate(whole, 10, (uint)(text[i] - '0'), ref overflow);
                i++;
            }
            if (i == digitsStart)
            {
                return SizeParseError.Invalid;
            }
            if (i < text.Length && text[i] == '.')
            {
                int fractionStart = i;
                i++;
                while (i < text.Length && char.IsAsciiDigit(text[i]))
                {
                    i++;
                }
                fraction = double.Parse("0" + text[fractionStart..i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
                // A fraction that rounds to a whole unit in double precision counts for nothing in qemu-img (0.99999999999999999k is 0).
                if (fraction >= 1.0)
                {
                    fraction = 0;
                }
            }
        }

        ulong multiplier = 1;
        if (i < text.Length)
        {
            multiplier = SuffixMultiplier(text[i]);
            if (multiplier == 0)
            {
                return SizeParseError.Invalid;
            }
            i++;
        }
        if (i != text.Length || (fraction != 0 && multiplier == 1))
        {
            return SizeParseError.Invalid;
        }
        if (overflow)
        {
            return SizeParseError.TooLarge;
        }

        UInt128 total = whole * multiplier + (UInt128)Math.Round(fraction * multiplier, MidpointRounding.AwayFromZero);
        if (whole > long.MaxValue || total > long.MaxValue)
        {
            return SizeParseError.TooLarge;
        }
        value = (long)total;
        return SizeParseError.None;
    }

    private static UInt128 Accumulate(UInt128 current, uint radix, uint digit, ref bool overflow)
    {
        // Anything past 2^64 is out of range anyway; stop growing so UInt128 cannot wrap.
        if (current > ulong.MaxValue)
        {
            overflow = true;
            return current;
        }
        return current * radix + digit;
    }

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
