import { Type } from '@sinclair/typebox';
import { ErrorResponse } from '../../protocol/messages.js';

/** The error responses a route can give, for the OpenAPI document. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorResponse> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorResponse]));
}

/** Raw bytes (a manifest as published, an artifact stream): documented, never re-serialized. */
export const Binary = Type.Unsafe<Buffer | NodeJS.ReadableStream>({ type: 'string', format: 'binary' });

/** A 304: no body at all (not an empty string, which would add Content-Length: 0). */
export const NotModified = Type.Unsafe<undefined>({ description: 'not modified: no body' });

export const Accepted = Type.Object({ status: Type.Literal('accepted') });

export const bearerSecurity = [{ bearerAuth: [] as string[] }];
