using System.Globalization;

namespace Qed.Cli.Output;

/// <summary>qemu-io's report after a read or write: <c>4 KiB, 1 ops; 00.00 sec (9.546 MiB/sec and 2443.8525 ops/sec)</c>.</summary>
internal static class IoStatistics
{
    /// <summary>The statistics line for <paramref name="operations"/> requests moving <paramref name="bytes"/> bytes in <paramref name="elapsed"/>.</summary>
    public static string Format(long bytes, int operations, TimeSpan elapsed)
    {
        // A zero duration would print "inf"; one tick is the clock's resolution anyway.
        double seconds = Math.Max(elapsed.Ticks, 1) / (double)TimeSpan.TicksPerSecond;
        return string.Create(CultureInfo.InvariantCulture,
            $"{FormatAmount(bytes)}, {operations} ops; {FormatTime(elapsed)} ({FormatAmount(bytes / seconds)}/sec and {operations / seconds:F4} ops/sec)");
    }

    /// <summary>qemu-io's amounts: three decimals in the largest binary unit reached, or six decimals of bytes, with a <c>.000</c> tail cut off (<c>4 KiB</c>, <c>1.500 KiB</c>, <c>20 bytes</c>).</summary>
    public static string FormatAmount(double value)
    {
        string[] units = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
        int index = 0;
        for (int shift = 60; shift >= 10; shift -= 10, index++)
        {
            double scale = Math.Pow(2, shift);
            if (value >= scale)
            {
                return Trim((value / scale).ToString("F3", CultureInfo.InvariantCulture)) + " " + units[index];
            }
        }
        return Trim(value.ToString("F6", CultureInfo.InvariantCulture)) + " bytes";
    }

    /// <summary>qemu-io's elapsed time: <c>SS.ss sec</c> below one second, else <c>H:MM:SS.ss</c>.</summary>
    public static string FormatTime(TimeSpan elapsed)
    {
        long wholeSeconds = elapsed.Ticks / TimeSpan.TicksPerSecond;
        double fraction = (elapsed.Ticks % TimeSpan.TicksPerSecond) / (double)TimeSpan.TicksPerSecond;
        if (wholeSeconds == 0)
        {
            return fraction.ToString("F2", CultureInfo.InvariantCulture).PadLeft(5, '0') + " sec";
        }
        long hours = wholeSeconds / 3600;
        long minutes = wholeSeconds / 60 % 60;
        double seconds = wholeSeconds % 60 + fraction;
        return string.Create(CultureInfo.InvariantCulture, $"{hours}:{minutes:00}:") + seconds.ToString("F2", CultureInfo.InvariantCulture).PadLeft(5, '0');
    }

    // qemu-io cuts the number at the first ".000", so 4.000 KiB prints as 4 KiB but 1.500 KiB stays.
    private static string Trim(string number)
    {
        int at = number.IndexOf(".000", StringComparison.Ordinal);
        return at < 0 ? number : number[..at];
    }
}
