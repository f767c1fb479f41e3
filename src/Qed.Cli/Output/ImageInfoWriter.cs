using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Qed.Formats;

namespace Qed.Cli.Output;

/// <summary>Prints <see cref="ImageInfo"/> as qemu-img info does, in human form or as JSON with qemu-img's keys and key order.</summary>
internal static class ImageInfoWriter
{
    /// <summary>JSON layout of qemu-img: four-space indentation, "\n" line ends, non-ASCII file names left readable.</summary>
    public static JsonWriterOptions JsonOptions { get; } = new()
    {
        Indented = true,
        IndentSize = 4,
        NewLine = "\n",
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes the human-readable block for one image (no trailing blank line).</summary>
    public static void WriteHuman(TextWriter writer, ImageInfo info)
    {
        var text = new StringBuilder();
        text.Append("image: ").Append(info.FileName).Append('\n');
        text.Append("file format: ").Append(info.Format).Append('\n');
        text.Append(CultureInfo.InvariantCulture, $"virtual size: {SizeFormatter.Format((ulong)info.VirtualSize)} ({info.VirtualSize} bytes)\n");
        text.Append("disk size: ").Append(info.ActualSize is { } actual ? SizeFormatter.Format((ulong)actual) : "unavailable").Append('\n');
        if (info.Encrypted)
        {
            text.Append("encrypted: yes\n");
        }
        if (info.ClusterSize is { } clusterSize)
        {
            text.Append(CultureInfo.InvariantCulture, $"cluster_size: {clusterSize}\n");
        }
        if (info.DirtyFlag == true)
        {
            text.Append("cleanly shut down: no\n");
        }
        if (info.BackingFileName is { } backing)
        {
            text.Append("backing file: ").Append(backing);
            if (info.FullBackingFileName is null)
            {
                text.Append(" (cannot determine actual path)");
            }
            else if (info.FullBackingFileName != backing)
            {
                text.Append(" (actual path: ").Append(info.FullBackingFileName).Append(')');
            }
            text.Append('\n');
            if (info.BackingFormat is { } backingFormat)
            {
                text.Append("backing file format: ").Append(backingFormat).Append('\n');
            }
        }
        if (info.Snapshots.Count > 0)
        {
            ImageInfoSnapshots.AppendHuman(text, info.Snapshots);
        }
        if (info.FormatSpecific.Count > 0)
        {
            ImageInfoDetails.AppendHuman(text, info.FormatSpecific);
        }
        writer.Write(text.ToString());
    }

    /// <summary>Writes one image as a JSON object, keys in qemu-img's order (the iteration order of its dictionary, not alphabetical).</summary>
    public static void WriteJson(Utf8JsonWriter json, ImageInfo info)
    {
        json.WriteStartObject();
        if (info.BackingFileName is not null && info.BackingFormat is not null)
        {
            json.WriteString("backing-filename-format", info.BackingFormat);
        }
        if (info.Snapshots.Count > 0)
        {
            ImageInfoSnapshots.WriteJson(json, info.Snapshots);
        }
        json.WriteNumber("virtual-size", info.VirtualSize);
        json.WriteString("filename", info.FileName);
        if (info.ClusterSize is { } clusterSize)
        {
            json.WriteNumber("cluster-size", clusterSize);
        }
        json.WriteString("format", info.Format);
        if (info.ActualSize is { } actual)
        {
            json.WriteNumber("actual-size", actual);
        }
        if (info.FormatSpecific.Count > 0)
        {
            json.WriteStartObject("format-specific");
            json.WriteString("type", info.Format);
            json.WriteStartObject("data");
            ImageInfoDetails.WriteMembers(json, info.FormatSpecific);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        if (info.BackingFileName is not null)
        {
            if (info.FullBackingFileName is not null)
            {
                json.WriteString("full-backing-filename", info.FullBackingFileName);
            }
        }
        if (info.Encrypted)
        {
            json.WriteBoolean("encrypted", true);
        }
        if (info.BackingFileName is not null)
        {
            json.WriteString("backing-filename", info.BackingFileName);
        }
        if (info.DirtyFlag is { } dirty)
        {
            json.WriteBoolean("dirty-flag", dirty);
        }
        json.WriteEndObject();
    }

    /// <summary>Writes a whole report: one object, or an array for a backing chain, then a newline.</summary>
    public static void WriteJson(TextWriter writer, IReadOnlyList<ImageInfo> chain, bool asArray)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, JsonOptions))
        {
            if (asArray)
            {
                json.WriteStartArray();
            }
            foreach (var info in chain)
            {
                WriteJson(json, info);
            }
            if (asArray)
            {
                json.WriteEndArray();
            }
        }
        writer.Write(Encoding.UTF8.GetString(buffer.WrittenSpan));
        writer.Write('\n');
    }
}
