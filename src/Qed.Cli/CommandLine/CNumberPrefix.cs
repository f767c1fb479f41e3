namespace Qed.Cli.CommandLine;

/// <summary>The part that C's <c>strtol</c> family shares, which qemu-img and qemu-io parse numbers with: leading white space, a sign, and the base from a <c>0x</c> or <c>0</c> prefix.</summary>
internal static class CNumberPrefix
{
    /// <summary>Skips white space and a sign from <paramref name="index"/> and returns the base (16 after <c>0x</c>, 8 after a leading <c>0</c>, else 10), leaving <paramref name="index"/> at the first digit.</summary>
    public static int Scan(string text, ref int index, out bool negative)
    {
        while (index < text.Length && text[index] is ' ' or '\t' or '\n' or '\v' or '\f' or '\r')
        {
            index++;
        }
        negative = false;
        if (index < text.Length && text[index] is '+' or '-')
        {
            negative = text[index] == '-';
            index++;
        }
        if (index + 2 < text.Length && text[index] == '0' && text[index + 1] is 'x' or 'X' && Uri.IsHexDigit(text[index + 2]))
        {
            index += 2;
            return 16;
        }
        return index < text.Length && text[index] == '0' ? 8 : 10;
    }

    /// <summary>The value of a digit in any base up to 16, or -1.</summary>
    public static int DigitValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
