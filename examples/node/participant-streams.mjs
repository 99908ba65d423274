// Transcribe every participant of a room from ONE job, without AgentSession: per participant a
// silero VAD + STT stream, and the job publishes each final transcript itself.
//
// This sidesteps agents-js #1927 (a second AgentSession.start({ room }) in one job throws) and is
// the lightest design: one agent participant, one VAD per speaker, no session machinery.
//
//   node participant-streams.mjs start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET
//
// Environment: OPENAI_BASE_URL and OPENAI_API_KEY (read by the OpenAI client: any OpenAI-compatible
// transcription API; `kit live --agent` sets both to its stand-in), KIT_AGENT_NAME (the name to
// register; explicit dispatch only).
import {
  AutoSubscribe,
  ServerOptions,
  cli,
  defineAgent,
  log,
  shortuuid,
  stt,
} from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import * as silero from '@livekit/agents-plugin-silero';
import {
  AudioStream,
  ParticipantKind,
  RoomEvent,
  TrackKind,
  TrackSource,
} from '@livekit/rtc-node';
import { fileURLToPath } from 'node:url';

const AGENT_NAME = process.env.KIT_AGENT_NAME || 'participant-streams-transcriber';

export default defineAgent({
  // Runs once per job process: the model loads before a job arrives, and every stream shares it.
  prewarm: async (proc) => {
    proc.userData.vad = await silero.VAD.load(); // defaults: 0.55 s of silence ends an utterance
  },
  entry: async (ctx) => {
    // whisper-1 is not a streaming STT: the StreamAdapter cuts the audio into utterances with the
    // VAD and sends each one to the transcription API when it ends.
    const transcriber = new stt.StreamAdapter(
      new openai.STT({
        // no baseURL, no apiKey: the OpenAI client reads OPENAI_BASE_URL and OPENAI_API_KEY (api.openai.com
        // by default; under `kit live --agent`, the kit's local stand-in)
        model: 'whisper-1',
        language: 'en',
        useRealtime: false, // 1.9.0 defaults to the realtime websocket API, even for whisper-1
      }),
      ctx.proc.userData.vad,
    );

    // Subscribed microphones, including late joiners': each gets its own stream until it ends.
    ctx.room.on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (
        track.kind !== TrackKind.KIND_AUDIO ||
        publication.source !== TrackSource.SOURCE_MICROPHONE ||
        participant.kind === ParticipantKind.AGENT // never transcribe other agents
      ) {
        return;
      }
      transcribe(ctx.room, transcriber, track, participant.identity).catch((error) =>
        log().error({ error, participant: participant.identity }, 'transcription failed'),
      );
    });

    await ctx.connect(undefined, AutoSubscribe.AUDIO_ONLY);
  },
});

async function transcribe(room, transcriber, track, identity) {
  const speech = transcriber.stream();
  const audio = new AudioStream(track, { sampleRate: 16000, numChannels: 1 }); // what silero and Whisper use
  const pump = (async () => {
    for await (const frame of audio) speech.pushFrame(frame);
    speech.endInput(); // the track ended: flush the last utterance
  })();

  for await (const event of speech) {
    const text = event.alternatives?.[0]?.text;
    if (event.type !== stt.SpeechEventType.FINAL_TRANSCRIPT || !text) continue;
    // LiveKit's transcription format, what AgentSession publishes and what LiveKit clients read:
    // a text stream on lk.transcription, sent on behalf of the speaker, naming their track.
    const writer = await room.localParticipant.streamText({
      topic: 'lk.transcription',
      senderIdentity: identity,
      attributes: {
        'lk.transcription_final': 'true',
        'lk.transcribed_track_id': track.sid,
        'lk.segment_id': shortuuid('SG_'),
      },
    });
    await writer.write(text);
    await writer.close();
  }
  await pump;
}

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(import.meta.url),
    agentName: AGENT_NAME, // a name means explicit dispatch: the worker joins only rooms it is sent to
    host: '127.0.0.1', // the worker's health-check server (default: every interface, port 8081)
    initializeProcessTimeout: 60 * 1000, // a job process loads silero: on a busy machine, more than the default 10 s
  }),
);
