using System.Globalization;

namespace Qed.Cli.Output;

/// <summary>Human-readable sizes in qemu-img's style: three significant digits and a binary unit (<c>10 MiB</c>, <c>260 KiB</c>, <c>0.977 KiB</c>).</summary>
internal static class SizeFormatter
{
    private static readonly string[] s_units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    /// <summary>Formats a byte count as qemu-img prints "virtual size" and "disk size".</summary>
    /// <remarks>The unit switches once the value would reach 1000 of the current unit (so 1000 bytes print as <c>0.977 KiB</c>, not <c>1000 B</c>).</remarks>
    public static string Format(ulong bytes)
    {
        int unit = 0;
        if (bytes > 0)
        {
            unit = Math.Min(Math.ILogB(bytes / (1000.0 / 1024.0)) / 10, s_units.Length - 1);
        }
        double scaled = bytes / Math.Pow(1024, unit);
        return FormatSignificant3(scaled) + " " + s_units[unit];
    }

    /// <summary>C's <c>printf("%.3g")</c> for non-negative values: three significant digits, trailing zeros dropped, exponent form outside [1e-4, 1e3).</summary>
    public static string FormatSignificant3(double value)
    {
        const int precision = 3;
        if (value == 0)
        {
            return "0";
        }
        // Round to three significant digits first: the exponent after rounding decides the notation (999.7 becomes 1e+03).
        string scientific = value.ToString("E" + (precision - 1), CultureInfo.InvariantCulture);
        int e = scientific.IndexOf('E', StringComparison.Ordinal);
        int exponent = int.Parse(scientific.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        if (exponent < -4 || exponent >= precision)
        {
            string mantissa = TrimFraction(scientific[..e]);
            return mantissa + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
        }
        return TrimFraction(value.ToString("F" + (precision - 1 - exponent), CultureInfo.InvariantCulture));
    }

    private static string TrimFraction(string number) =>
        number.Contains('.', StringComparison.Ordinal) ? number.TrimEnd('0').TrimEnd('.') : number;
}
