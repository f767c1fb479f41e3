using System.Globalization;
using System.Text;
using System.Text.Json;
using Qed.Formats;

namespace Qed.Cli.Output;

/// <summary>Prints the internal snapshots of an image as qemu-img info does: the <c>Snapshot list:</c> table and the JSON <c>snapshots</c> list.</summary>
internal static class ImageInfoSnapshots
{
    private const long NanosecondsPerSecond = 1_000_000_000;

    /// <summary>Appends <c>Snapshot list:</c>, the column titles and one row per snapshot.</summary>
    /// <remarks>
    /// qemu-img pads the titles to 10 and 17 columns but the rows to 9 and 16 plus a separating space, so a long ID or
    /// tag still leaves one space; the date is local time, the VM clock <c>HH:MM:SS.mmm</c> with unbounded hours.
    /// </remarks>
    public static void AppendHuman(StringBuilder text, IReadOnlyList<ImageSnapshot> snapshots)
    {
        text.Append("Snapshot list:\n");
        text.Append(CultureInfo.InvariantCulture, $"{"ID",-10}{"TAG",-17}{"VM SIZE",8}{"DATE",20}{"VM CLOCK",13}{"ICOUNT",11}\n");
        foreach (var snapshot in snapshots)
        {
            string size = SizeFormatter.Format((ulong)snapshot.VmStateSize);
            string date = DateTimeOffset.FromUnixTimeSeconds(snapshot.DateSeconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
            string icount = snapshot.InstructionCount is { } count ? count.ToString(CultureInfo.InvariantCulture) : "";
            text.Append(CultureInfo.InvariantCulture, $"{snapshot.Id,-9} {snapshot.Name,-16} {size,8}{date,20}{Clock(snapshot.VmClockNanoseconds),13}{icount,11}\n");
        }
    }

    /// <summary>Writes the JSON <c>snapshots</c> member, each entry's keys in qemu-img's order.</summary>
    public static void WriteJson(Utf8JsonWriter json, IReadOnlyList<ImageSnapshot> snapshots)
    {
        json.WriteStartArray("snapshots");
        foreach (var snapshot in snapshots)
        {
            ulong clock = (ulong)snapshot.VmClockNanoseconds;
            json.WriteStartObject();
            if (snapshot.InstructionCount is { } count)
            {
                json.WriteNumber("icount", count);
            }
            json.WriteNumber("vm-clock-nsec", clock % NanosecondsPerSecond);
            json.WriteString("name", snapshot.Name);
            json.WriteNumber("date-sec", snapshot.DateSeconds);
            json.WriteNumber("date-nsec", snapshot.DateNanoseconds);
            json.WriteNumber("vm-clock-sec", clock / NanosecondsPerSecond);
            json.WriteString("id", snapshot.Id);
            json.WriteNumber("vm-state-size", snapshot.VmStateSize);
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    /// <summary>The guest clock as qemu-img prints it: hours (as many digits as needed), minutes, seconds, milliseconds.</summary>
    private static string Clock(long nanoseconds)
    {
        ulong value = (ulong)nanoseconds;
        ulong seconds = value / NanosecondsPerSecond;
        // qemu-img formats each part as a C int; the casts keep its wrap-around on absurd clocks.
        int hours = unchecked((int)(seconds / 3600));
        int minutes = unchecked((int)(seconds / 60 % 60));
        int secs = unchecked((int)(seconds % 60));
        int milliseconds = unchecked((int)(value / 1_000_000 % 1000));
        return string.Create(CultureInfo.InvariantCulture, $"{hours:00}:{minutes:00}:{secs:00}.{milliseconds:000}");
    }
}
