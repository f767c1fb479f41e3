using System.Globalization;
using System.Text;
using System.Text.Json;
using Qed.Formats;

namespace Qed.Cli.Output;

/// <summary>Prints the format-specific details of an image (scalars, objects, lists, nested) as qemu-img info does in human form and JSON.</summary>
internal static class ImageInfoDetails
{
    private const int IndentWidth = 4;

    /// <summary>Appends <c>Format specific information:</c> and every detail, nested members four spaces further in.</summary>
    public static void AppendHuman(StringBuilder text, IReadOnlyList<ImageDetail> details)
    {
        text.Append("Format specific information:\n");
        AppendMembers(text, details, 1);
    }

    private static void AppendMembers(StringBuilder text, IReadOnlyList<ImageDetail> members, int depth)
    {
        foreach (var member in members)
        {
            AppendEntry(text, member.Name.Replace('-', ' '), member, depth);
        }
    }

    /// <summary>One line <c>label: value</c>, or <c>label:</c> followed by the children of an object or list (list elements labelled <c>[i]</c>).</summary>
    private static void AppendEntry(StringBuilder text, string label, ImageDetail detail, int depth)
    {
        text.Append(' ', depth * IndentWidth).Append(label).Append(':');
        switch (detail.Kind)
        {
            case ImageDetailKind.Object:
                text.Append('\n');
                AppendMembers(text, detail.Children, depth + 1);
                break;
            case ImageDetailKind.List:
                text.Append('\n');
                for (int i = 0; i < detail.Children.Count; i++)
                {
                    AppendEntry(text, string.Create(CultureInfo.InvariantCulture, $"[{i}]"), detail.Children[i], depth + 1);
                }
                break;
            default:
                text.Append(' ').Append(detail.Value).Append('\n');
                break;
        }
    }

    /// <summary>Writes the members of <paramref name="details"/> into the JSON object being written.</summary>
    public static void WriteMembers(Utf8JsonWriter json, IReadOnlyList<ImageDetail> details)
    {
        foreach (var detail in details)
        {
            json.WritePropertyName(detail.Name);
            WriteValue(json, detail);
        }
    }

    private static void WriteValue(Utf8JsonWriter json, ImageDetail detail)
    {
        switch (detail.Kind)
        {
            case ImageDetailKind.Boolean:
                json.WriteBooleanValue(bool.Parse(detail.Value));
                break;
            case ImageDetailKind.Number:
                json.WriteNumberValue(long.Parse(detail.Value, CultureInfo.InvariantCulture));
                break;
            case ImageDetailKind.Object when detail.Children.Count > 0:
                json.WriteStartObject();
                WriteMembers(json, detail.Children);
                json.WriteEndObject();
                break;
            case ImageDetailKind.List when detail.Children.Count > 0:
                json.WriteStartArray();
                foreach (var element in detail.Children)
                {
                    WriteValue(json, element);
                }
                json.WriteEndArray();
                break;
            case ImageDetailKind.Object or ImageDetailKind.List:
                // qemu-img breaks the line even in an empty object or list: "[" newline, the closing bracket indented as the key.
                string indent = new(' ', json.CurrentDepth * IndentWidth);
                json.WriteRawValue(detail.Kind == ImageDetailKind.Object ? "{\n" + indent + "}" : "[\n" + indent + "]", skipInputValidation: true);
                break;
            default:
                json.WriteStringValue(detail.Value);
                break;
        }
    }
}
